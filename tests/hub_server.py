"""A loopback server that speaks the Hugging Face Hub HTTP API, for tests without a network.

The real ``huggingface_hub`` client (and transformers through it) runs unchanged against it
once ``HF_ENDPOINT`` points at :attr:`LoopbackHub.url` before ``huggingface_hub`` is imported.
Model repositories only, held in memory. Every file is committed as a plain git blob: the
pre-upload endpoint answers the "regular" upload mode, so no LFS or Xet transfer happens.

Endpoints (``{repo_id}`` is ``namespace/name``, ``{rev}`` a branch or a commit SHA):

    POST      /api/repos/create                        create a repository
    POST      /api/validate-yaml                       check the front matter of a README.md
    GET       /api/models/{repo_id}[/revision/{rev}]   model info: sha, siblings, cardData
    POST      /api/models/{repo_id}/preupload/{rev}    upload mode of each file to commit
    POST      /api/models/{repo_id}/commit/{rev}       NDJSON commit (header, file, deletions)
    GET       /api/models/{repo_id}/tree/{rev}[/path]  listing of files and folders
    POST      /api/models/{repo_id}/paths-info/{rev}   information on given paths
    HEAD/GET  /{repo_id}/resolve/{rev}/{path}          file metadata (X-Repo-Commit, ETag), content

Errors carry the ``X-Error-Code`` header (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``) from which the client raises its typed exceptions.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, unquote, urlsplit

import yaml

if TYPE_CHECKING:
    from typing_extensions import Self

_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


class HubError(Exception):
    """An API error, answered with ``X-Error-Code`` (and ``X-Repo-Commit`` where the revision is known)."""

    def __init__(self, status: int, message: str, code: str | None = None, commit: str | None = None):
        super().__init__(message)
        self.status, self.code, self.commit = status, code, commit


def git_blob_oid(content: bytes) -> str:
    """The git object id of a file: SHA-1 of ``b"blob <size>\\0" + content`` (40 hex)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def front_matter(text: str) -> dict:
    """The YAML metadata block at the top of a model card (``{}`` when there is none)."""
    match = _FRONT_MATTER.match(text)
    return (yaml.safe_load(match.group(1)) or {}) if match else {}


@dataclass
class Repo:
    """A model repository: snapshots by commit SHA, and branches pointing at them."""

    private: bool
    commits: dict[str, dict[str, bytes]] = field(default_factory=dict)
    branches: dict[str, str] = field(default_factory=dict)

    def snapshot(self, revision: str) -> tuple[str, dict[str, bytes]]:
        """``(commit sha, {path: content})`` of a branch or a commit."""
        sha = self.branches.get(revision, revision)
        if sha not in self.commits:
            raise HubError(404, f"Invalid rev id: {revision}", "RevisionNotFound")
        return sha, self.commits[sha]

    def commit(self, branch: str, files: dict[str, bytes], summary: str) -> str:
        """Record ``files`` as the new head of ``branch``; return the commit SHA (40 hex)."""
        listing = sorted((path, git_blob_oid(content)) for path, content in files.items())
        payload = [self.branches.get(branch), len(self.commits), summary, listing]
        sha = hashlib.sha1(json.dumps(payload).encode()).hexdigest()
        self.commits[sha], self.branches[branch] = dict(files), sha
        return sha


@dataclass
class Request:
    """What an endpoint needs from an HTTP request: the path's parts, query, body, and auth."""

    repo_id: str | None = None
    rev: str | None = None
    path: str | None = None
    query: dict[str, list[str]] = field(default_factory=dict)
    body: bytes = b""
    authorized: bool = False


def _tree_entries(files: dict[str, bytes], prefix: str, recursive: bool) -> list[dict]:
    """Tree listing of the files (and, unless recursive, the folders) under ``prefix``."""
    base = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
    entries: dict[str, dict] = {}
    for path, content in sorted(files.items()):
        if not path.startswith(base):
            continue
        rest = path[len(base) :]
        if recursive or "/" not in rest:
            entries[path] = {
                "type": "file",
                "path": path,
                "size": len(content),
                "oid": git_blob_oid(content),
            }
        else:
            folder = base + rest.split("/", 1)[0]
            entries[folder] = {
                "type": "directory",
                "path": folder,
                "oid": hashlib.sha1(folder.encode()).hexdigest(),
            }
    if base and not entries:
        raise HubError(404, f"{prefix} does not exist", "EntryNotFound")
    return list(entries.values())


class LoopbackHub:
    """The Hub API on ``127.0.0.1`` (a free port), served by a thread while used as a context manager.

    Write endpoints require ``Authorization: Bearer <token>``; private repositories are
    invisible without it.
    """

    def __init__(self, token: str = "dummy-token"):
        self.token = token
        self.repos: dict[str, Repo] = {}
        self.requests: list[str] = []
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self._server.daemon_threads = True
        self._server.hub = self
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        """Base URL, the value for ``HF_ENDPOINT``."""
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()

    def files(self, repo_id: str, revision: str = "main") -> dict[str, bytes]:
        """Content of every file of a repository at ``revision``."""
        with self.lock:
            return dict(self.repos[repo_id].snapshot(revision)[1])

    def run_python(self, script: str, *args: str, timeout: float = 300) -> str:
        """Run ``script`` in a fresh interpreter whose Hub client talks to this server; return stdout.

        The child inherits this process's environment (cache folders) with ``HF_ENDPOINT`` and
        ``HF_TOKEN`` set for this server. A non-zero exit fails with the end of the child's stderr.
        """
        env = {**os.environ, "HF_ENDPOINT": self.url, "HF_TOKEN": self.token}
        result = subprocess.run(
            [sys.executable, "-c", script, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"child exited with {result.returncode}:\n{result.stderr[-4000:]}")
        return result.stdout

    def _repo(self, request: Request) -> Repo:
        repo = self.repos.get(request.repo_id)
        if repo is None or (repo.private and not request.authorized):
            raise HubError(404, f"Repository not found: {request.repo_id}", "RepoNotFound")
        return repo

    def create_repo(self, request: Request) -> dict:
        """``POST /api/repos/create``: 409 when the repository exists (``exist_ok`` accepts it)."""
        payload = json.loads(request.body)
        if payload.get("type", "model") != "model":
            raise HubError(400, "the loopback hub serves model repositories only")
        repo_id = f"{payload.get('organization') or 'user'}/{payload['name']}"
        if repo_id in self.repos:
            raise HubError(409, "You already created this model repo")
        self.repos[repo_id] = Repo(private=bool(payload.get("private")) or payload.get("visibility") == "private")
        self.repos[repo_id].commit("main", {}, "initial commit")
        return {"url": f"{self.url}/{repo_id}", "name": repo_id}

    def validate_yaml(self, request: Request) -> dict:
        """``POST /api/validate-yaml``: 400 with the parser's message when the front matter is invalid."""
        try:
            front_matter(json.loads(request.body)["content"])
        except yaml.YAMLError as error:
            raise HubError(400, f"Invalid YAML in README.md: {error}") from error
        return {"errors": [], "warnings": []}

    def model_info(self, request: Request) -> dict:
        """``GET /api/models/{repo_id}[/revision/{rev}]``: the fields ``ModelInfo`` reads."""
        repo = self._repo(request)
        sha, files = repo.snapshot(request.rev or "main")
        card = front_matter(files["README.md"].decode()) if "README.md" in files else {}
        return {
            "id": request.repo_id,
            "author": request.repo_id.split("/")[0],
            "sha": sha,
            "private": repo.private,
            "gated": False,
            "disabled": False,
            "library_name": card.get("library_name"),
            "tags": card.get("tags", []),
            "cardData": card or None,
            "siblings": [{"rfilename": path} for path in sorted(files)],
        }

    def preupload(self, request: Request) -> dict:
        """``POST .../preupload/{rev}``: "regular" for every file, with its current blob id if any."""
        _, files = self._repo(request).snapshot(request.rev)
        paths = [item["path"] for item in json.loads(request.body)["files"]]
        return {
            "files": [
                {
                    "path": path,
                    "uploadMode": "regular",
                    "shouldIgnore": False,
                    "oid": git_blob_oid(files[path]) if path in files else None,
                }
                for path in paths
            ]
        }

    def commit(self, request: Request) -> dict:
        """``POST .../commit/{rev}``: apply NDJSON ``header``/``file``/``deletedFile``/``deletedFolder`` lines."""
        repo = self._repo(request)
        if request.rev not in repo.branches:
            raise HubError(404, f"Cannot commit to {request.rev}: not a branch", "RevisionNotFound")
        head, files = repo.snapshot(request.rev)
        files, summary = dict(files), ""
        for line in request.body.splitlines():
            operation = json.loads(line)
            key, value = operation["key"], operation["value"]
            if key == "header":
                summary = value["summary"]
                if value.get("parentCommit") not in (None, head):
                    raise HubError(
                        412,
                        f"parent commit {value['parentCommit']} is not the head of {request.rev}",
                    )
            elif key == "file":
                content = value["content"]
                is_base64 = value.get("encoding") == "base64"
                files[value["path"]] = base64.b64decode(content) if is_base64 else content.encode()
            elif key == "deletedFile":
                if files.pop(value["path"], None) is None:
                    raise HubError(404, "A file with this name doesn't exist", "EntryNotFound")
            elif key == "deletedFolder":
                prefix = value["path"].rstrip("/") + "/"
                files = {path: data for path, data in files.items() if not path.startswith(prefix)}
            else:
                raise HubError(400, f"unsupported commit operation {key!r}: only regular files are accepted")
        sha = repo.commit(request.rev, files, summary)
        return {
            "success": True,
            "commitOid": sha,
            "commitUrl": f"{self.url}/{request.repo_id}/commit/{sha}",
        }

    def tree(self, request: Request) -> list[dict]:
        """``GET .../tree/{rev}[/path]``: the whole listing in one page (no ``Link`` header)."""
        _, files = self._repo(request).snapshot(request.rev)
        recursive = request.query.get("recursive", ["false"])[0].lower() == "true"
        return _tree_entries(files, request.path or "", recursive)

    def paths_info(self, request: Request) -> list[dict]:
        """``POST .../paths-info/{rev}`` (form field ``paths``, repeated): entries of those that exist."""
        _, files = self._repo(request).snapshot(request.rev)
        wanted = set(parse_qs(request.body.decode()).get("paths", []))
        listing = _tree_entries(files, "", recursive=False) + _tree_entries(files, "", recursive=True)
        return list({entry["path"]: entry for entry in listing if entry["path"] in wanted}.values())

    def resolve(self, request: Request) -> tuple[bytes, dict[str, str]]:
        """``HEAD/GET /{repo_id}/resolve/{rev}/{path}``: content, with ``X-Repo-Commit`` and ``ETag``."""
        sha, files = self._repo(request).snapshot(request.rev)
        if request.path not in files:
            raise HubError(404, f"Entry not found: {request.path}", "EntryNotFound", commit=sha)
        content = files[request.path]
        return content, {"X-Repo-Commit": sha, "ETag": f'"{git_blob_oid(content)}"'}


_REPO, _REV = r"(?P<repo_id>[^/]+/[^/]+)", r"(?P<rev>[^/]+)"
_ROUTES: list[tuple[str, re.Pattern, str]] = [
    ("POST", re.compile(r"/api/repos/create"), "create_repo"),
    ("POST", re.compile(r"/api/validate-yaml"), "validate_yaml"),
    ("GET", re.compile(rf"/api/models/{_REPO}(?:/revision/{_REV})?"), "model_info"),
    ("POST", re.compile(rf"/api/models/{_REPO}/preupload/{_REV}"), "preupload"),
    ("POST", re.compile(rf"/api/models/{_REPO}/commit/{_REV}"), "commit"),
    ("GET", re.compile(rf"/api/models/{_REPO}/tree/{_REV}(?:/(?P<path>.+))?"), "tree"),
    ("POST", re.compile(rf"/api/models/{_REPO}/paths-info/{_REV}"), "paths_info"),
    ("GET", re.compile(rf"/{_REPO}/resolve/{_REV}/(?P<path>.+)"), "resolve"),
]
_WRITES = {"create_repo", "preupload", "commit"}


class _Handler(BaseHTTPRequestHandler):
    """Routes a request to the :class:`LoopbackHub` endpoint whose pattern matches its path."""

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_POST(self) -> None:
        self._dispatch(send_body=True)

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        self.server.hub.requests.append(f"{self.command} {self.path} {code}")

    def log_message(self, format: str, *args: object) -> None:
        """Silence the default logging to stderr: :attr:`LoopbackHub.requests` records each request."""

    def _dispatch(self, send_body: bool) -> None:
        hub: LoopbackHub = self.server.hub
        url = urlsplit(self.path)
        verb = "GET" if self.command == "HEAD" else self.command
        request = Request(
            query=parse_qs(url.query),
            body=self.rfile.read(int(self.headers.get("Content-Length") or 0)),
            authorized=self.headers.get("Authorization") == f"Bearer {hub.token}",
        )
        headers = {"Content-Type": "application/json"}
        routes = ((name, pattern.fullmatch(url.path)) for method, pattern, name in _ROUTES if method == verb)
        name, match = next(((name, match) for name, match in routes if match), (None, None))
        try:
            if name is None:
                raise HubError(404, f"{self.command} {url.path} is not served by the loopback hub")
            if name in _WRITES and not request.authorized:
                raise HubError(401, "Invalid credentials in Authorization header")
            for key, value in match.groupdict().items():
                setattr(request, key, None if value is None else unquote(value))
            with hub.lock:
                result = getattr(hub, name)(request)
            status = 200
            if name == "resolve":
                content, file_headers = result
                headers = {"Content-Type": "application/octet-stream", **file_headers}
            else:
                content = json.dumps(result).encode()
        except HubError as error:
            status, content = error.status, json.dumps({"error": str(error)}).encode()
            headers["X-Error-Message"] = str(error)
            headers.update({"X-Error-Code": error.code} if error.code else {})
            headers.update({"X-Repo-Commit": error.commit} if error.commit else {})
        except (KeyError, ValueError) as error:
            status, content = 400, json.dumps({"error": f"malformed request: {error!r}"}).encode()
        self.send_response(status)
        for key, value in {**headers, "Content-Length": str(len(content))}.items():
            self.send_header(key, value)
        self.end_headers()
        if send_body:
            self.wfile.write(content)
