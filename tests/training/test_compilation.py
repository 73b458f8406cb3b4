"""Training under `torch.compile`: the same losses and gradients as eager mode
(`selfdetr train --compile` is tested with the other `train` options).

Inductor compiles C++ kernels on first use: this takes minutes on a machine whose kernel
cache (``TORCHINDUCTOR_CACHE_DIR``, by default under the temporary folder) is empty, and
seconds once it holds them.
"""

import copy

import pytest
import torch
from conftest import small_config

from selfdetr_hf import SelfDetrForActionDetection
from selfdetr_hf.training.compilation import compile_for_training


def test_a_compiled_step_gives_the_eager_loss_and_gradients_with_dropout_and_padding():
    torch.manual_seed(0)
    eager = SelfDetrForActionDetection(small_config(dropout=0.1)).train()
    compiled = compile_for_training(copy.deepcopy(eager))
    features = torch.randn(3, 24, 16, generator=torch.Generator().manual_seed(1))
    attention_mask = torch.ones(3, 24)
    attention_mask[2, 18:] = 0
    labels = [
        {"class_labels": torch.tensor([0, 1]), "segments": torch.tensor([[0.3, 0.1], [0.7, 0.2]])},
        {"class_labels": torch.tensor([1]), "segments": torch.tensor([[0.5, 0.3]])},
        {"class_labels": torch.tensor([], dtype=torch.long), "segments": torch.zeros(0, 2)},
    ]
    results = {}
    for name, model in (("eager", eager), ("compiled", compiled)):
        torch.manual_seed(5)  # the same dropout draws
        outputs = model(input_features=features, attention_mask=attention_mask, labels=labels)
        outputs.loss.backward()
        results[name] = outputs, {n: p.grad for n, p in model.named_parameters()}, torch.rand(1)

    (eager_out, eager_grads, eager_next), (compiled_out, compiled_grads, compiled_next) = results.values()
    assert compiled_out.loss_dict.keys() == eager_out.loss_dict.keys()
    for name, value in eager_out.loss_dict.items():
        torch.testing.assert_close(compiled_out.loss_dict[name], value, rtol=1e-5, atol=1e-6, msg=name)
    assert eager_out.loss_dict["loss_encoder_feedback"] > 0 and eager_out.loss_dict["loss_decoder_feedback"] > 0
    torch.testing.assert_close(compiled_out.logits, eager_out.logits, rtol=1e-5, atol=1e-5)
    assert compiled_grads.keys() == eager_grads.keys()
    for name, gradient in eager_grads.items():
        torch.testing.assert_close(compiled_grads[name], gradient, rtol=1e-4, atol=1e-5, msg=name)
    assert torch.equal(compiled_next, eager_next)  # the random stream advanced alike
    assert compiled.state_dict().keys() == eager.state_dict().keys()


def test_compile_for_training_refuses_another_model():
    with pytest.raises(TypeError, match="SelfDetrForActionDetection; got SelfDetrModel"):
        compile_for_training(SelfDetrForActionDetection(small_config()).model)
