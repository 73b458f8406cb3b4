"""`AutoModelForTemporalActionDetection` and the ``auto_map`` of saved folders."""

import json

import torch
from transformers import AutoModel, AutoModelForObjectDetection, pipeline

from selfdetr_hf import (
    AutoModelForTemporalActionDetection,
    SelfDetrForActionDetection,
    SelfDetrModel,
    SelfDetrProcessor,
)
from selfdetr_hf.hub import SAVED_CODE_FILES

CODE_FILES = {"configuration_self_detr.py", "modeling_self_detr.py", "losses.py", "matcher.py", "segment_ops.py",
              "self_feedback.py"}  # fmt: skip


def test_the_task_auto_class_gives_the_detector_with_its_heads_and_auto_model_the_base(tiny_config, tmp_path):
    model = SelfDetrForActionDetection(tiny_config).eval()
    model.save_pretrained(tmp_path)
    features = torch.randn(1, 12, 32)
    for trust_remote_code in (False, True):
        loaded = AutoModelForTemporalActionDetection.from_pretrained(tmp_path, trust_remote_code=trust_remote_code)
        assert type(loaded) is SelfDetrForActionDetection  # the package's own class, with or without the flag
        assert torch.equal(loaded.eval()(input_features=features).logits, model(input_features=features).logits)
        assert type(AutoModel.from_pretrained(tmp_path, trust_remote_code=trust_remote_code)) is SelfDetrModel
    assert type(AutoModelForTemporalActionDetection.from_config(tiny_config)) is SelfDetrForActionDetection


def test_a_saved_folder_holds_its_code_and_an_auto_map(tiny_config, tmp_path):
    SelfDetrForActionDetection(tiny_config).save_pretrained(tmp_path)
    assert CODE_FILES <= {path.name for path in tmp_path.iterdir()}
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_self_detr.SelfDetrConfig",
        "AutoModel": "modeling_self_detr.SelfDetrModel",
        "AutoModelForTemporalActionDetection": "modeling_self_detr.SelfDetrForActionDetection",
        "AutoModelForObjectDetection": "modeling_self_detr.SelfDetrForActionDetection",
    }
    detector = AutoModelForObjectDetection.from_pretrained(tmp_path, trust_remote_code=True)
    assert type(detector).__name__ == "SelfDetrForActionDetection" and detector.class_head.out_features == 3


def test_a_folder_saved_without_auto_map_still_loads(tiny_config, tmp_path):
    model = SelfDetrForActionDetection(tiny_config)
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    del config["auto_map"]
    (tmp_path / "config.json").write_text(json.dumps(config))
    for name in CODE_FILES:
        (tmp_path / name).unlink()
    assert type(AutoModelForTemporalActionDetection.from_pretrained(tmp_path)) is SelfDetrForActionDetection
    assert type(SelfDetrForActionDetection.from_pretrained(tmp_path)) is SelfDetrForActionDetection
    assert type(AutoModel.from_pretrained(tmp_path)) is SelfDetrModel


def test_the_saved_code_files_are_what_save_pretrained_writes(tiny_config, tmp_path):
    model = SelfDetrForActionDetection(tiny_config)
    detector = pipeline("temporal-action-detection", model=model, feature_extractor=SelfDetrProcessor.thumos14())
    detector.save_pretrained(tmp_path)
    assert {path.name for path in tmp_path.glob("*.py")} == set(SAVED_CODE_FILES)
