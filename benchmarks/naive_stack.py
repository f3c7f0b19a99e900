"""The naive baseline: the same models behind one FastAPI (uvicorn) process, no Triton.

What a team would write first: one Python process (``uvicorn``, one worker; FastAPI runs the sync handlers in its
thread pool), the pipeline's own encoder, retriever and reranker called directly per request (``RecPipeline``), and
the reply from ``transformers`` ``Qwen2ForCausalLM.generate()`` (greedy) on the generator's HF-format folder
(``config.json`` + safetensors, read by ``from_pretrained``), prompted exactly like the product
(``build_prompt`` + the product tokenizer's ``encode_prompt`` with the ranked items' Semantic IDs). Unlike the
product it decodes without the item-span constraint and reply check, so its replies may name items freely; the
token budget (``max_new_tokens``) and eos are the product's.

    python -m benchmarks.naive_stack --artifact-dir DIR --port 8090     # serves POST /rank and POST /recommend
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import torch
from pydantic import BaseModel

log = logging.getLogger(__name__)


class Body(BaseModel):
    """One request, the same fields as the ensembles' inputs."""

    user_id: str
    query: str
    top_k: int = 5
    service: str = ""


class NaiveStack:
    """Rank with the pipeline's stages in-process, reply with ``transformers`` ``generate()``."""

    def __init__(self, artifact_dir: Path):
        import transformers  # noqa: PLC0415 - only this process needs it

        from recllm.artifacts import ArtifactLayout  # noqa: PLC0415
        from recllm.generator.item_codes import ItemCodes  # noqa: PLC0415
        from recllm.generator.model import GeneratorConfig  # noqa: PLC0415
        from recllm.generator.tokenizer import ReplyTokenizer  # noqa: PLC0415
        from recllm.pipeline import RecPipeline  # noqa: PLC0415

        layout = ArtifactLayout(Path(artifact_dir))
        self.pipeline = RecPipeline.load(layout.root)
        folder = layout.generator_dir
        self.hf = transformers.Qwen2ForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
        self.tokenizer = ReplyTokenizer.load(folder)
        self.codes = ItemCodes.load(folder)
        from recllm.generator.model import GENERATOR_CONFIG_FILE  # noqa: PLC0415

        config_path = folder / GENERATOR_CONFIG_FILE
        self.max_new_tokens = GeneratorConfig.load(config_path).max_new_tokens if config_path.is_file() else 48
        self.lock = threading.Lock()  # one generate() at a time: torch already uses every core for one

    def rank(self, user_id: str, query: str, top_k: int, service: str) -> dict:
        from recllm.rag.rec_request import parse_request  # noqa: PLC0415

        request = parse_request(user_id, query, top_k, service)
        retrieval, ranking = self.pipeline.retrieve_and_rank(request)
        return {"service": retrieval.service, "items": self.pipeline.describe(ranking),
                "profile_facts": [f.text(request.language) for f, _ in retrieval.fragments],
                "language": request.language, "query": request.query,
                "item_ids": [int(i) for i in ranking.item_ids]}

    def reply(self, ranked: dict) -> tuple[str, int]:
        from recllm.generator import build_prompt, derive_act, reply_frame  # noqa: PLC0415

        act = derive_act(ranked["query"], ranked["item_ids"])
        prompt = build_prompt(ranked["service"], ranked["language"], ranked["query"], ranked["profile_facts"], act, "",
                              reply_frame(ranked["query"], act))
        max_prompt = self.hf.config.max_position_embeddings - self.max_new_tokens
        ids = self.tokenizer.encode_prompt(prompt, [self.codes.sid_of(i) for i in ranked["item_ids"]], max_prompt)
        input_ids = torch.tensor([ids])  # [1, T]
        with self.lock, torch.inference_mode():
            out = self.hf.generate(input_ids, attention_mask=torch.ones_like(input_ids), do_sample=False,
                                   max_new_tokens=self.max_new_tokens, eos_token_id=self.tokenizer.eos_id,
                                   pad_token_id=self.tokenizer.pad_id)
        new = out[0, input_ids.shape[1]:].tolist()
        return self.tokenizer.decode(new), len(new)

    def recommend(self, user_id: str, query: str, top_k: int, service: str) -> dict:
        ranked = self.rank(user_id, query, top_k, service)
        ranked["reply"], ranked["new_tokens"] = self.reply(ranked)
        return ranked


def create_app(artifact_dir: Path):
    from fastapi import FastAPI, HTTPException  # noqa: PLC0415

    from recllm.rag.rec_request import RequestError  # noqa: PLC0415

    stack = NaiveStack(artifact_dir)
    app = FastAPI(title="Rec-LLM naive baseline")

    def guarded(call, body: Body) -> dict:
        try:
            return call(body.user_id, body.query, body.top_k, body.service)
        except RequestError as exc:
            raise HTTPException(status_code=400, detail=str(exc)) from exc

    @app.post("/rank")
    def rank(body: Body) -> dict:
        return guarded(stack.rank, body)

    @app.post("/recommend")
    def recommend(body: Body) -> dict:
        return guarded(stack.recommend, body)

    @app.get("/ready")
    def ready() -> dict:
        return {"ready": True}

    return app


class NaiveServer:
    """The baseline in its own process (``python -m benchmarks.naive_stack``) on loopback, for benchmarks."""

    def __init__(self, artifact_dir: Path, port: int, log_path: Path):
        self.artifact_dir, self.port, self.log_path = Path(artifact_dir), port, Path(log_path)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> "NaiveServer":
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = open(self.log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed in __exit__
        self.process = subprocess.Popen(
            [sys.executable, "-m", "benchmarks.naive_stack", "--artifact-dir", str(self.artifact_dir),
             "--port", str(self.port)], stdout=self._log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"naive stack exited with {self.process.returncode}; see {self.log_path}")
            try:
                urllib.request.urlopen(self.url + "/ready", timeout=2).read()
                return self
            except OSError:
                time.sleep(1)
        raise TimeoutError(f"naive stack not ready within 600 s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
        self._log.close()


def main(argv: list[str] | None = None) -> None:
    import uvicorn  # noqa: PLC0415

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=Path("artifacts/default"))
    parser.add_argument("--port", type=int, default=8090)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    uvicorn.run(create_app(args.artifact_dir), host="127.0.0.1", port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
