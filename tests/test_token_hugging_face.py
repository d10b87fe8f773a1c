"""Hugging Face token models built from tiny configs (nothing is downloaded): a BERT classifier and a GPT-2
language model measured at the token embedding's output against the float64 reference, and a GPT-2 run saved
with `save_pretrained` (which leaves out the head tied to the embedding) analysed end to end."""

import pytest
import torch
from safetensors import safe_open

from grokmon import analyze, info
from grokmon.inputs.models import TensorOutput
from token_reference import InputsEmbedsRest, reference_errors

transformers = pytest.importorskip("transformers", reason="needs transformers (pip install 'grokmon[integrations]')")
pytestmark = pytest.mark.usefixtures("one_thread")

# 300 tokens: more outputs than the exact Jacobian's limit (256), and D = 9 x 16 = 144 inputs, more than the
# sketch's 128 columns: the spectrum comes from the randomized sketch (exact here: the rank is at most 16).
GPT2 = {"vocab_size": 300, "n_positions": 9, "n_embd": 16, "n_layer": 1, "n_head": 2, "use_cache": False,
        "bos_token_id": 0, "eos_token_id": 0}
BERT = {"vocab_size": 50, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 32, "max_position_embeddings": 16, "num_labels": 3}
GPT2_FACTORY = f"""\
from transformers import GPT2Config, GPT2LMHeadModel

def build():
    return GPT2LMHeadModel(GPT2Config(**{GPT2!r}))
"""


def _distinct(modules):
    return list({id(m): m for m in modules}.values())


def test_bert_classifier_matches_the_float64_reference():
    torch.manual_seed(0)
    model = transformers.BertForSequenceClassification(transformers.BertConfig(**BERT)).double().eval()
    tokens, labels = torch.randint(0, 50, (6, 5)), torch.randint(0, 3, (6,))
    layers = model.bert.encoder.layer
    activations = _distinct([layer.intermediate.intermediate_act_fn for layer in layers] + [model.bert.pooler.activation])
    rest = InputsEmbedsRest(model, (5, 16), activations)
    errors = reference_errors(TensorOutput(model).eval(), model.get_input_embeddings(), rest, tokens, labels)
    assert max(errors.values()) < 1e-6, errors


def test_gpt2_language_model_matches_the_float64_reference_at_the_last_position():
    torch.manual_seed(1)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).double().eval()
    tokens, labels = torch.randint(0, 300, (3, 9)), torch.randint(0, 300, (3,))
    rest = InputsEmbedsRest(model, (9, 16), _distinct(block.mlp.act for block in model.transformer.h), position=-1)
    errors = reference_errors(TensorOutput(model, position=-1).eval(), model.get_input_embeddings(), rest, tokens,
                              labels, vectorize=True)
    assert max(errors.values()) < 1e-6, errors


def test_tied_gpt2_saved_with_save_pretrained_loads_and_is_scored_at_the_last_position(tmp_path):
    from safetensors.torch import save_file

    run = tmp_path / "gpt2"
    run.mkdir()
    (run / "factory.py").write_text(GPT2_FACTORY)
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**GPT2)).eval()
    tokens = torch.randint(0, 300, (8, 9))
    with torch.no_grad():
        labels = model(tokens).logits[:, -1].argmax(1)
    labels[:2] = (labels[:2] + 1) % 300  # 6 of 8 right at the first checkpoint
    save_file({"x_train": tokens, "y_train": labels}, str(run / "probes.safetensors"))
    truth = {}
    for step in (1, 2):
        with torch.no_grad():
            truth[step] = float((model(tokens).logits[:, -1].argmax(1) == labels).double().mean())
        model.save_pretrained(run / f"checkpoint-{step}")
        with torch.no_grad():
            model.transformer.wte.weight.mul_(-2.0)  # the tied head moves with it
    with safe_open(str(run / "checkpoint-2" / "model.safetensors"), "pt") as saved:
        assert "lm_head.weight" not in saved.keys() and "transformer.wte.weight" in saved.keys()
    frame = analyze(run, model="factory.py:build", position="last", metrics="accuracy,centroid", device="cpu",
                    threads=1)
    assert set(frame["status"]) == {"ok"}, frame["error"].tolist()
    train = frame[frame.split == "train"]
    assert train["accuracy"].tolist() == pytest.approx([truth[1], truth[2]]) and truth[1] == 0.75
    assert train["centroid_norm"].notna().all()
    found = info(run, model="factory.py:build", position="last", device="cpu")
    assert (found.embedding, found.input_dim) == ("transformer.wte", 144)
