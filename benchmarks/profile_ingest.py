"""Real-time profile path: ingest throughput, ingest-to-visible latency and per-user retrieval latency.

Runs the profile service (``recllm.profile_service``) on a private copy of a built artifact folder (the events
written here never touch the original) and measures:

* ingest events/s over one ``IngestEvents`` stream and over several concurrent streams, for events spread over
  all users and for events of a few hot users (events of existing users with hundreds of events each), in each
  refresh mode (``--refresh-mode``): "sync" acks after the fsynced commit and the refresh of every user in that
  commit, so the per-user refresh, timed on its own too, bounds the rate of events from distinct users; "async"
  acks after the commit and refreshes behind it, reported with the refresh lag (ack → user refreshed) and how long
  the refresh queue took to drain after the last ack;
* ingest-to-visible latency: from sending one purchase to the first retrieval that reflects it, polling
  (a) the in-process ``Retriever`` the Triton ``rag.retriever`` model runs (an existing user; visible = the purchased
  item's category fragment grew by one purchase) and (b) the real tritonserver's ``rag.retriever`` model over gRPC
  (a new user; visible = PROFILE_FACTS became non-empty);
* per-user retrieval latency (in-process ``Retriever.retrieve`` and the Triton ``rag.retriever`` model), idle and while
  a stream is ingesting.

Writes ``benchmarks/results/profile_ingest.md`` with the command and machine info. Run under the CPU lock:

    flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.profile_ingest [--artifact-dir artifacts/default]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sqlite3
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tritonclient.grpc as grpcclient

from benchmarks.machine_info import machine_info
from recllm.artifacts import ArtifactLayout
from recllm.pipeline import load_retriever
from recllm.profile_service.config import REFRESH_MODES, IngestPolicy, ProfileServiceConfig
from recllm.profile_service.server import ProfileServer
from recllm.profile.sqlite_store import ProfileStore
from recllm.rag.rec_request import parse_request
from recllm.rag.retriever import Retriever
from recllm.serving.triton_server import TritonServer, TritonServerConfig, free_port
from recllm.profile.events import Event
from recllm_client.profile_client import ProfileClient
from recllm_proto.user_token import Keyring, load_keyring

RESULTS = Path(__file__).resolve().parent / "results"
REPO_ROOT = Path(__file__).resolve().parents[1]
VISIBLE_TIMEOUT_S = 10.0
TOKEN_TTL_S = 60.0  # user tokens for the Triton retriever, signed per call as a calling backend would
POLL_SLEEP_S = 0.0005


@dataclass
class BenchConfig:
    artifact_dir: Path = REPO_ROOT / "artifacts" / "default"
    spread_events: int = 200            # events over all users (one refresh per distinct user per commit)
    hot_users: int = 5
    hot_events: int = 1000              # events over ``hot_users`` users (group commit amortises the refresh)
    concurrent_streams: int = 4
    visibility_trials: int = 100        # per path
    retrieval_requests: int = 300       # per measurement
    refresh_users: int = 20             # users whose refresh is timed on its own
    ingest_window: int = 8              # events in flight of the background stream during latency runs
    triton: bool = True                 # also measure through a real tritonserver on the copy
    refresh_modes: tuple[str, ...] = REFRESH_MODES  # ingest + visibility per mode; the last one serves the rest
    seed: int = 0

    def __post_init__(self) -> None:
        for name in ("spread_events", "hot_users", "hot_events", "concurrent_streams", "visibility_trials",
                     "retrieval_requests", "refresh_users", "ingest_window"):
            if getattr(self, name) < 1:
                raise ValueError(f"BenchConfig.{name} must be >= 1, got {getattr(self, name)!r}")
        unknown = [m for m in self.refresh_modes if m not in REFRESH_MODES]
        if unknown or not self.refresh_modes:
            raise ValueError(f"BenchConfig.refresh_modes must be some of {REFRESH_MODES}, got {self.refresh_modes!r}")


def copy_artifacts(source: ArtifactLayout, target_root: Path) -> ArtifactLayout:
    """Everything serving needs, with the SQLite files copied through the backup API (a consistent snapshot)."""
    source.require_built()
    ignore = shutil.ignore_patterns("triton_runtime", "*.sqlite", "*.sqlite-wal", "*.sqlite-shm")
    shutil.copytree(source.root, target_root, ignore=ignore)
    target = ArtifactLayout(target_root)
    for name in ("profile.sqlite", "sessions.sqlite"):
        if (source.root / name).exists():
            src = sqlite3.connect(f"file:{source.root / name}?mode=ro", uri=True)
            dst = sqlite3.connect(target_root / name)
            src.backup(dst)
            dst.execute("PRAGMA journal_mode=WAL")
            src.close()
            dst.close()
    return target


@dataclass(frozen=True)
class ProfileEndpoint:
    """The profile service under test and the keyring its clients sign with (the copy's own, beside it)."""

    address: str
    keyring: Keyring

    @classmethod
    def of(cls, server: ProfileServer) -> ProfileEndpoint:
        return cls(server.address, load_keyring(server.keyring_path).backend_view())

    def client(self) -> ProfileClient:
        """A client that signs a service token for ingest (the service refuses calls without one)."""
        return ProfileClient(self.address, timeout_s=600, keyring=self.keyring)


def percentiles_ms(samples_s: list[float]) -> dict:
    ms = np.array(samples_s) * 1000
    return {"n": len(ms), "p50": round(float(np.percentile(ms, 50)), 2), "p99": round(float(np.percentile(ms, 99)), 2),
            "mean": round(float(ms.mean()), 2), "max": round(float(ms.max()), 2)}


class Workload:
    """Valid events of the artifact's users over in-stock items, stamped with the store's newest time."""

    def __init__(self, retriever: Retriever, store: ProfileStore, seed: int):
        self.catalog = retriever.catalog
        self.rng = np.random.default_rng(seed)
        self.users = store.user_ids()
        self.now_ts = store.latest_timestamp()
        self.items = [i for i in self.catalog.items if i.in_stock and not self.catalog.is_sensitive(i)]
        self.basket = 0

    def event(self, user_id: str, item=None, kind: str | None = None) -> Event:
        item = item or self.items[self.rng.integers(len(self.items))]
        kind = kind or ("purchase" if self.rng.random() < 0.5 else "view")
        self.basket += 1
        basket = f"bench-{self.basket}" if kind != "view" else None
        return Event(user_id, item.service, item.item_id, kind, int(self.now_ts), basket, float(item.price), 1,
                     "moscow", "web")

    def events(self, n: int, users: list[str]) -> list[Event]:
        return [self.event(users[self.rng.integers(len(users))]) for _ in range(n)]


def ingest_rate(endpoint: ProfileEndpoint, streams: list[list[Event]], users: int) -> dict:
    """Send each list over its own stream at once; events/s from the first send to the last ack."""
    rejected = []

    def run(events: list[Event]) -> None:
        with endpoint.client() as client:
            rejected.extend(a.error for a in client.ingest(events) if not a.accepted)

    threads = [threading.Thread(target=run, args=(events,)) for events in streams]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - start
    total = sum(len(s) for s in streams)
    if rejected:
        raise RuntimeError(f"{len(rejected)} events rejected, e.g. {rejected[0]}")
    return {"streams": len(streams), "users": users, "events": total, "seconds": round(elapsed, 2),
            "events_per_s": round(total / elapsed, 1)}


def wait_visible(is_visible, started: float) -> float:
    deadline = started + VISIBLE_TIMEOUT_S
    while time.perf_counter() < deadline:
        if is_visible():
            return time.perf_counter() - started
        time.sleep(POLL_SLEEP_S)
    raise TimeoutError(f"event not visible after {VISIBLE_TIMEOUT_S} s")


class AckWatcher:
    """One long-lived ingest stream: ``send(event)`` returns at once; ack times are recorded by sequence."""

    def __init__(self, client: ProfileClient):
        self._outbox: list = []
        self._ready = threading.Condition()
        self.ack_times: dict[int, float] = {}
        self.errors: list[str] = []
        self._thread = threading.Thread(target=self._run, args=(client,), daemon=True)
        self._sequence = 0
        self._closed = False
        self._thread.start()

    def _messages(self):
        while True:
            with self._ready:
                while not self._outbox and not self._closed:
                    self._ready.wait()
                if not self._outbox:
                    return
                event = self._outbox.pop(0)
            yield event

    def _run(self, client: ProfileClient) -> None:
        for ack in client.ingest(self._messages()):
            self.ack_times[ack.sequence] = time.perf_counter()
            if not ack.accepted:
                self.errors.append(ack.error)

    def send(self, event: Event) -> int:
        from recllm_client.profile_client import event_message  # noqa: PLC0415

        sequence = self._sequence
        self._sequence += 1
        with self._ready:
            self._outbox.append(event_message(event, sequence=sequence))
            self._ready.notify()
        return sequence

    def close(self) -> None:
        with self._ready:
            self._closed = True
            self._ready.notify()
        self._thread.join(60)


def category_weight(retriever: Retriever, user_id: str, key: str, query_vector: np.ndarray) -> float | None:
    request = parse_request(user_id, "что-нибудь", 5, key.split(":")[0])
    for fragment, _ in retriever.retrieve(request, query_vector).fragments:
        if fragment.fragment_key == key:
            return fragment.weight
    return None


def visibility_in_process(watcher: AckWatcher, retriever: Retriever, workload: Workload, trials: int) -> dict:
    """Existing users: a purchase in a category whose fragment the retrieval already returns; visible = +1."""
    vectors = retriever.index.item_vectors
    visible, acked, not_visible = [], [], 0
    for trial in range(trials):
        user_id = workload.users[trial % len(workload.users)]
        purchases = retriever.profile.events_of(user_id, kind="purchase")
        if not purchases:
            continue
        item = retriever.catalog.get(purchases[workload.rng.integers(len(purchases))].item_id)
        key = f"{item.service}:{item.category_id}"
        before = category_weight(retriever, user_id, key, vectors[item.item_id])
        if before is None or not item.in_stock:
            continue
        started = time.perf_counter()
        sequence = watcher.send(workload.event(user_id, item, "purchase"))
        try:
            visible.append(wait_visible(
                lambda: (category_weight(retriever, user_id, key, vectors[item.item_id]) or 0) > before, started))
        except TimeoutError:
            not_visible += 1
        while sequence not in watcher.ack_times:
            time.sleep(POLL_SLEEP_S)
        acked.append(watcher.ack_times[sequence] - started)
    return {"visible_ms": percentiles_ms(visible), "ack_ms": percentiles_ms(acked), "not_visible": not_visible}


def triton_retrieve(client: grpcclient.InferenceServerClient, keyring: Keyring, user_id: str, service: str,
                    query_vector: np.ndarray) -> list[str]:
    """Tritonserver's retriever model for ``user_id``: the user travels as a user token signed with the server's
    keyring (the model takes the user from the verified token), as the ensembles pass it on."""
    def text(name: str, value: str) -> grpcclient.InferInput:
        tensor = grpcclient.InferInput(name, [1], "BYTES")
        tensor.set_data_from_numpy(np.array([value.encode()], dtype=np.object_))
        return tensor

    top_k = grpcclient.InferInput("TOP_K", [1], "INT32")
    top_k.set_data_from_numpy(np.array([5], dtype=np.int32))
    embedding = grpcclient.InferInput("QUERY_EMBEDDING", [len(query_vector)], "FP32")
    embedding.set_data_from_numpy(query_vector.astype(np.float32))
    result = client.infer("retriever", [text("USER_TOKEN", keyring.sign(user_id, ttl_s=TOKEN_TTL_S)), text("QUERY", "что-нибудь"), top_k,
                                        text("SERVICE", service), embedding])
    return [f.decode() for f in result.as_numpy("PROFILE_FACTS").reshape(-1)]


def visibility_triton(watcher: AckWatcher, client, keyring: Keyring, retriever: Retriever, workload: Workload, trials: int) -> dict:
    """New users through tritonserver's retriever model: visible = the first PROFILE_FACTS appear."""
    vectors = retriever.index.item_vectors
    visible, not_visible = [], 0
    for trial in range(trials):
        user_id = f"bench-new-{trial}"
        item = workload.items[workload.rng.integers(len(workload.items))]
        assert triton_retrieve(client, keyring, user_id, item.service, vectors[item.item_id]) == []
        started = time.perf_counter()
        watcher.send(workload.event(user_id, item, "purchase"))
        try:
            visible.append(wait_visible(
                lambda: bool(triton_retrieve(client, keyring, user_id, item.service, vectors[item.item_id])), started))
        except TimeoutError:
            not_visible += 1
    return {"visible_ms": percentiles_ms(visible), "not_visible": not_visible}


def retrieval_latency(retrieve_one, workload: Workload, vectors: np.ndarray, n: int) -> dict:
    samples = []
    for i in range(n):
        user_id = workload.users[i % len(workload.users)]
        item = workload.items[workload.rng.integers(len(workload.items))]
        started = time.perf_counter()
        retrieve_one(user_id, item.service, vectors[item.item_id])
        samples.append(time.perf_counter() - started)
    return percentiles_ms(samples)


def while_ingesting(endpoint: ProfileEndpoint, workload: Workload, window: int, measure):
    """Run ``measure()`` while one stream keeps ``window`` events of existing users in flight."""
    stop = threading.Event()
    slots = threading.Semaphore(window)

    def events():
        while not stop.is_set():
            if slots.acquire(timeout=0.1):
                yield workload.event(workload.users[workload.rng.integers(len(workload.users))])

    def run():
        with endpoint.client() as client:
            for _ in client.ingest(events()):
                slots.release()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        return measure()
    finally:
        stop.set()
        thread.join(120)


def refresh_cost(server: ProfileServer, users: list[str], now_ts: int) -> dict:
    """The writer's per-user profile refresh alone, on the writer thread (what each commit pays per user)."""
    writer = server.writer

    def timed(store):
        samples = []
        for user_id in users:
            started = time.perf_counter()
            writer.refresh(store, writer.catalog, writer.item_vectors, user_id, now_ts)
            samples.append(time.perf_counter() - started)
        return samples

    return percentiles_ms(writer.call(timed).result())


def ingest_runs(config: BenchConfig, workload: Workload) -> dict[str, tuple[list[list[Event]], int]]:
    """The four ingest runs (fresh events each call): name → (one event list per stream, users they spread over)."""
    spread, hot = workload.users, workload.users[: config.hot_users]
    per_stream = config.concurrent_streams
    return {
        "one stream, events spread over all users": ([workload.events(config.spread_events, spread)], len(spread)),
        f"{per_stream} streams, spread over all users": (
            [workload.events(config.spread_events // per_stream, spread) for _ in range(per_stream)], len(spread)),
        f"one stream, {len(hot)} hot users": ([workload.events(config.hot_events, hot)], len(hot)),
        f"{per_stream} streams, {len(hot)} hot users": (
            [workload.events(config.hot_events // per_stream, hot) for _ in range(per_stream)], len(hot)),
    }


def ingest_in_mode(server: ProfileServer, config: BenchConfig, workload: Workload) -> dict:
    """Ingest rates of the four runs; after each, how long the refresh queue took to drain past the last ack."""
    figures = {}
    for name, (streams, users) in ingest_runs(config, workload).items():
        rate = ingest_rate(ProfileEndpoint.of(server), streams, users)
        started = time.perf_counter()
        if not server.wait_refreshed(600):
            raise RuntimeError("the refresh queue did not drain within 600 s")
        rate["refresh_drain_s"] = round(time.perf_counter() - started, 2)
        rate["events_per_s_incl_drain"] = round(rate["events"] / (rate["seconds"] + rate["refresh_drain_s"]), 1)
        figures[name] = rate
        print(f"ingest ({server.config.ingest.refresh_mode}), {name}:", rate, flush=True)
    return figures


def measure_mode(server: ProfileServer, config: BenchConfig, workload: Workload, retriever: Retriever) -> dict:
    mode = server.config.ingest.refresh_mode
    results: dict = {"ingest": ingest_in_mode(server, config, workload)}
    lags = list(server.writer.refresher.lags_s)  # async refreshes only (sync refreshes before the ack: no lag)
    results["refresh_lag_ms"] = percentiles_ms(lags) if lags else None
    print(f"refresh lag ({mode}):", results["refresh_lag_ms"], flush=True)
    with ProfileEndpoint.of(server).client() as client:
        watcher = AckWatcher(client)
        results["visible_in_process"] = visibility_in_process(watcher, retriever, workload, config.visibility_trials)
        watcher.close()
    print(f"visible ({mode}, in-process Retriever):", results["visible_in_process"], flush=True)
    if watcher.errors:
        raise RuntimeError(f"rejected events during the visibility runs: {watcher.errors[:3]}")
    return results


def run_benchmark(config: BenchConfig, layout: ArtifactLayout, preset: str) -> dict:
    results: dict = {"machine": machine_info(), "artifacts": str(config.artifact_dir), "preset": preset,
                     "modes": {}}
    retriever = load_retriever(layout)
    workload = Workload(retriever, retriever.profile, config.seed)
    results["store"] = {"users": len(workload.users), "events": retriever.profile.connection().execute(
        "SELECT COUNT(*) FROM events").fetchone()[0]}
    for mode in config.refresh_modes:
        service_config = ProfileServiceConfig(artifact_dir=layout.root, port=0,
                                              ingest=IngestPolicy(refresh_mode=mode))
        with ProfileServer(service_config) as server:
            print(f"profile service ({mode} refresh) on {server.address}; store {results['store']}", flush=True)
            results["refresh"] = server.writer.refresh.__module__ + "." + server.writer.refresh.__name__
            results["modes"][mode] = measure_mode(server, config, workload, retriever)
            if mode == config.refresh_modes[-1]:
                results["serving_mode"] = mode
                results.update(serving_measurements(server, config, layout, workload, retriever))
    return results


def serving_measurements(server: ProfileServer, config: BenchConfig, layout: ArtifactLayout, workload: Workload,
                         retriever: Retriever) -> dict:
    """Refresh cost alone, group commit figures, retrieval latency (and the Triton path) on one running service."""
    results: dict = {}
    results["refresh_ms"] = refresh_cost(server, workload.users[: config.refresh_users], workload.now_ts)
    print("refresh per user:", results["refresh_ms"], flush=True)
    results["writer"] = {"batches": server.writer.committed_batches, "events": server.writer.committed_events}
    vectors = retriever.index.item_vectors

    def in_process(user_id, service, vector):
        retriever.retrieve(parse_request(user_id, "что-нибудь", 5, service), vector)

    results["retrieval_in_process_idle"] = retrieval_latency(in_process, workload, vectors, config.retrieval_requests)
    endpoint = ProfileEndpoint.of(server)
    results["retrieval_in_process_ingesting"] = while_ingesting(
        endpoint, workload, config.ingest_window,
        lambda: retrieval_latency(in_process, workload, vectors, config.retrieval_requests))
    print("retrieval in-process:", results["retrieval_in_process_idle"], results["retrieval_in_process_ingesting"],
          flush=True)
    if config.triton:
        with endpoint.client() as client:
            watcher = AckWatcher(client)
            results.update(triton_measurements(config, layout, endpoint, watcher, retriever, workload))
            watcher.close()
        if watcher.errors:
            raise RuntimeError(f"rejected events during the Triton runs: {watcher.errors[:3]}")
    return results


def triton_measurements(config: BenchConfig, layout: ArtifactLayout, endpoint: ProfileEndpoint, watcher: AckWatcher,
                        retriever: Retriever, workload: Workload) -> dict:
    triton_config = TritonServerConfig(artifact_dir=layout.root, grpc_port=free_port(), http_port=free_port(),
                                       metrics_port=free_port())
    results = {}
    vectors = retriever.index.item_vectors
    with TritonServer(triton_config) as triton, grpcclient.InferenceServerClient(triton.config.grpc_url) as client:
        print("tritonserver ready", flush=True)
        keyring = load_keyring(triton.config.keyring_path).backend_view()  # the copy's keyring, as the service's
        results["visible_triton"] = visibility_triton(watcher, client, keyring, retriever, workload, config.visibility_trials)
        print("visible (Triton retriever):", results["visible_triton"], flush=True)

        def via_triton(user_id, service, vector):
            triton_retrieve(client, keyring, user_id, service, vector)

        results["retrieval_triton_idle"] = retrieval_latency(via_triton, workload, vectors, config.retrieval_requests)
        results["retrieval_triton_ingesting"] = while_ingesting(
            endpoint, workload, config.ingest_window, lambda: retrieval_latency(via_triton, workload, vectors, config.retrieval_requests))
        print("retrieval Triton:", results["retrieval_triton_idle"], results["retrieval_triton_ingesting"],
              flush=True)
    return results


def latency_row(name: str, figures: dict) -> str:
    return f"| {name} | {figures['n']} | {figures['p50']} | {figures['p99']} | {figures['mean']} | {figures['max']} |"


def write_markdown(results: dict, command: str) -> Path:
    machine = results["machine"]
    lines = [
        "# Profile service: ingest throughput, ingest-to-visible latency, per-user retrieval latency",
        "",
        f"Command: `{command}`",
        "",
        f"Artifacts: `{results['artifacts']}` (preset `{results['preset']}`), copied to a temporary folder first so "
        f"the benchmark's events never reach the original; store at start: {results['store']['users']} users, "
        f"{results['store']['events']} events. Profile refresh after each commit: `{results['refresh']}`.",
        "",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, load average at start "
        f"{machine['load_average_at_start']}, Python {machine['python']}, commit {machine['git_commit']}, "
        f"{machine['date_utc']}. The cores are shared with other jobs; figures are for this loaded machine.",
        "",
    ]
    lines += ingest_section(results)
    refresh = results["refresh_ms"]
    lines += ["", f"Per-user profile refresh alone (what sync mode pays per distinct user per commit before the ack, "
                  f"and the refresh thread pays in async mode): p50 {refresh['p50']} ms, p99 {refresh['p99']} ms "
                  f"over {refresh['n']} users."]
    writer = results["writer"]
    lines += ["", f"Group commit ({results['serving_mode']} server): {writer['events']} events in {writer['batches']} "
                  f"transactions ({writer['events'] / max(writer['batches'], 1):.1f} events per fsync on average).",
              "", "## Ingest-to-visible latency, ms (send → first retrieval that reflects the event)", "",
              "In-process Retriever, existing user; visible = the category fragment's weight grew, i.e. the *derived* "
              "profile was refreshed (raw events are visible to the retriever at the ack in both modes).", "",
              "| path | n | p50 | p99 | mean | max |", "|---|---:|---:|---:|---:|---:|"]
    for mode, figures in results["modes"].items():
        lines += [latency_row(f"{mode}: fragment weight +1", figures["visible_in_process"]["visible_ms"]),
                  latency_row(f"{mode}: ack only (same trials)", figures["visible_in_process"]["ack_ms"])]
    if "visible_triton" in results:
        lines.append(latency_row(f"{results['serving_mode']}: tritonserver `retriever` model over gRPC, new user "
                                 "(first PROFILE_FACTS)", results["visible_triton"]["visible_ms"]))
    missed = {mode: figures["visible_in_process"]["not_visible"] for mode, figures in results["modes"].items()}
    if "visible_triton" in results:
        missed["triton"] = results["visible_triton"]["not_visible"]
    lines += ["", f"Trials where the event was not visible within {VISIBLE_TIMEOUT_S:.0f} s: {missed}."]
    lines += ["", f"## Per-user retrieval latency, ms ({results['serving_mode']} refresh mode)", "",
              "| path | n | p50 | p99 | mean | max |", "|---|---:|---:|---:|---:|---:|"]
    for key, name in (("retrieval_in_process_idle", "in-process Retriever, idle"),
                      ("retrieval_in_process_ingesting", "in-process Retriever, while one stream ingests"),
                      ("retrieval_triton_idle", "tritonserver `retriever` model, idle"),
                      ("retrieval_triton_ingesting", "tritonserver `retriever` model, while one stream ingests")):
        if key in results:
            lines.append(latency_row(name, results[key]))
    lines += ["", "Raw figures:", "", "```json", json.dumps(results, indent=1, ensure_ascii=False), "```", ""]
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "profile_ingest.md"
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


def ingest_section(results: dict) -> list[str]:
    modes = list(results["modes"])
    lines = ["## Ingest throughput by refresh mode", "",
             "sync: ack = fsynced commit + refresh of the commit's users. async: ack = fsynced commit; a refresh "
             "thread catches the derived profile up (drain = from the last ack until the refresh queue was empty; "
             "incl. drain = events / (ingest seconds + drain)).", "",
             "| run | streams | users | events | " + " | ".join(f"{m} events/s" for m in modes)
             + (" | async drain s | async events/s incl. drain |" if "async" in modes else " |"),
             "|---|---:|---:|---:|" + "---:|" * len(modes) + ("---:|---:|" if "async" in modes else "")]
    first = results["modes"][modes[0]]["ingest"]
    for name, r in first.items():
        row = f"| {name} | {r['streams']} | {r['users']} | {r['events']} | " + " | ".join(
            str(results["modes"][m]["ingest"][name]["events_per_s"]) for m in modes)
        if "async" in modes:
            run = results["modes"]["async"]["ingest"][name]
            row += f" | {run['refresh_drain_s']} | {run['events_per_s_incl_drain']}"
        lines.append(row + " |")
    for mode in modes:
        lag = results["modes"][mode]["refresh_lag_ms"]
        if lag is not None:
            lines += ["", f"Refresh lag in {mode} mode (ack → user refreshed; a user's lag counts from the first "
                          f"unrefreshed ack), ms over the {lag['n']} refreshes of the four runs: p50 {lag['p50']}, "
                          f"p99 {lag['p99']}, mean {lag['mean']}, max {lag['max']}."]
    return lines


def test_preset_layout(scratch: Path) -> ArtifactLayout:
    from builders.build_artifacts import BuildConfig, build  # noqa: PLC0415

    return build(BuildConfig(preset="test", output_dir=scratch / "test_build", progress=False))


def main(argv: list[str] | None = None) -> int:
    defaults = BenchConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    for name in ("spread_events", "hot_users", "hot_events", "concurrent_streams", "visibility_trials",
                 "retrieval_requests", "refresh_users", "ingest_window"):
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=getattr(defaults, name))
    parser.add_argument("--no-triton", action="store_true", help="skip the tritonserver measurements")
    parser.add_argument("--refresh-mode", choices=(*REFRESH_MODES, "both"), default="both",
                        help="profile refresh mode(s) to measure; both: sync then async side by side")
    args = parser.parse_args(argv)
    sizes = {name: getattr(args, name) for name in ("spread_events", "hot_users", "hot_events", "concurrent_streams",
                                                     "visibility_trials", "retrieval_requests", "refresh_users",
                                                     "ingest_window")}
    modes = REFRESH_MODES if args.refresh_mode == "both" else (args.refresh_mode,)
    config = BenchConfig(artifact_dir=args.artifact_dir, triton=not args.no_triton, refresh_modes=modes, **sizes)
    with tempfile.TemporaryDirectory(prefix="profile-bench-") as scratch:
        source = ArtifactLayout(config.artifact_dir)
        if source.is_built():
            preset = (source.read_manifest() or {}).get("preset", "unknown")
        else:
            print(f"{source.root} is not built: using a fresh build of the small `test` preset instead", flush=True)
            source, preset = test_preset_layout(Path(scratch)), "test"
            config.artifact_dir = source.root
        layout = copy_artifacts(source, Path(scratch) / "copy")
        results = run_benchmark(config, layout, preset)
    command = "flock /tmp/recllm-cpu.lock .venv/bin/python -m benchmarks.profile_ingest " + " ".join(argv or sys.argv[1:])
    print(f"wrote {write_markdown(results, command.strip())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
