"""PyTorch's side of the embedding comparison, on the GPU host.

Builds all-MiniLM-L6-v2's architecture from its config.json with seeded
random weights (the real weights, 90 MB, do not fit the 64 MiB that reaches
the GPU host; speed does not depend on the values, and agreement is checked
on identical weights), saves them as safetensors for candle to load, then
embeds the same sentences as `gpukit-models` does: BERT, mean pooling over
the attention mask, unit norm, float32, batches padded to the longest.
"""

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer
from transformers import BertConfig, BertModel

MAX_TOKENS = 256  # inference::embed's truncation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--config-dir", required=True, help="config.json and tokenizer.json")
    ap.add_argument("--model-out", required=True, help="where the weights are written")
    ap.add_argument("--sentences", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--keep", type=int, default=64, help="embeddings reported for comparison")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()

    src, dst = Path(a.config_dir), Path(a.model_out)
    dst.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json"):
        shutil.copy(src / name, dst / name)
    torch.manual_seed(0)
    model = BertModel(BertConfig.from_json_file(str(src / "config.json")), add_pooling_layer=False)
    model.eval()
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(dst / "model.safetensors"))
    model.to(a.device)

    tok = Tokenizer.from_file(str(src / "tokenizer.json"))
    tok.enable_padding()
    tok.enable_truncation(MAX_TOKENS)
    texts = [t for t in Path(a.sentences).read_text().splitlines() if t]

    def embed(batch):
        enc = tok.encode_batch(batch)
        ids = torch.tensor([e.ids for e in enc], device=a.device)
        mask = torch.tensor([e.attention_mask for e in enc], device=a.device)
        hidden = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids))
        m = mask.unsqueeze(-1).to(hidden.last_hidden_state.dtype)
        mean = (hidden.last_hidden_state * m).sum(1) / m.sum(1).clamp(min=1e-9)
        return torch.nn.functional.normalize(mean, dim=1)

    def sync():
        if a.device.startswith("cuda"):
            torch.cuda.synchronize()

    with torch.inference_mode():
        kept = torch.cat([embed(texts[i : i + a.batch]) for i in range(0, a.keep, a.batch)])
        sync()
        rounds = []
        for _ in range(a.rounds):
            t = time.perf_counter()
            for i in range(0, len(texts), a.batch):
                embed(texts[i : i + a.batch])
            sync()
            rounds.append(len(texts) / (time.perf_counter() - t))

    name = torch.cuda.get_device_name(0) if a.device.startswith("cuda") else "cpu"
    report = {
        "device": f"{a.device} ({name}), torch {torch.__version__}",
        "batch": a.batch,
        "sentences_per_sec": statistics.median(rounds),
        "rounds": rounds,
        "embeddings": kept[: a.keep].cpu().tolist(),
    }
    Path(a.out).write_text(json.dumps(report))
    print(f"  torch {a.device} batch {a.batch}: {report['sentences_per_sec']:.0f} sentences/s")


if __name__ == "__main__":
    main()
