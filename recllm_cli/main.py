"""``recllm`` command line: build artifacts, serve them with Triton, chat with a user, run the demo.

    recllm build [--preset default|test] [--force] [--profile-url postgresql://…]
    recllm serve [--grpc-port 8001 --http-port 8000 --metrics-port 8002 --profile-port 8003]
                 [--profile-url postgresql://…]                                (profile in PostgreSQL)
                 [--tls | --tls-cert CERT --tls-key KEY] [--keyring PATH]      (gRPC over TLS; token keys)
                                                                               (foreground, Ctrl-C stops)
    recllm chat --user u000001 [--url 127.0.0.1:8001] [--root-cert PEM]        (interactive, streamed)
    recllm demo [--tls]                                                        (build, serve, 3 turns, stop)
    recllm keys rotate [--keep 2] [--keyring PATH]                             (new signing key, in place)
    recllm eval --dataset beauty|food_kitchen|tafeng|synthetic [--quick]       (quality protocols)
    recllm eval --amazon-dir DIR                                               (any Amazon-format folder)
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import re
import signal
import sys
import time
import uuid
from pathlib import Path

from recllm.artifacts import ArtifactLayout
from recllm.evaluation.cli_eval import add_eval_arguments
from recllm.serving.tls import CERT_NAME, TlsError, TlsFiles, self_signed, tls_dir_for
from recllm.serving.triton_server import TritonServer, TritonServerConfig, TritonServerError

DEMO_TURNS = (
    ("samokat", "что приготовить на ужин, чтобы было полезно?"),
    ("samokat", "подешевле"),
    ("samokat", "закажи как в прошлый раз, но без лактозы"),
)


def add_server_args(parser: argparse.ArgumentParser) -> None:
    defaults = TritonServerConfig()
    parser.add_argument("--artifact-dir", type=Path, default=defaults.artifact_dir)
    parser.add_argument("--grpc-port", type=int, default=defaults.grpc_port)
    parser.add_argument("--http-port", type=int, default=defaults.http_port)
    parser.add_argument("--metrics-port", type=int, default=defaults.metrics_port)
    parser.add_argument("--generator-checkpoint", type=Path, default=None, metavar="DIR",
                        help="serve this Hugging Face Qwen2 checkpoint folder (config.json + safetensors + "
                             "tokenizer.json) as the reply generator instead of the build's; it is converted once "
                             "(SID item-code tokens added, their embeddings from the codebook centroids)")
    add_keyring_arg(parser, "the keyring user tokens are verified with (created 0600 if absent); default: "
                            "<artifact-dir>.keyring.json beside the build")
    parser.add_argument("--no-stub-watchdog", dest="stub_watchdog", action="store_false",
                        help="run tritonserver in model control mode NONE without the watchdog that reloads a model "
                             "whose Python-backend stub died (then a dead stub stays dead until a restart)")
    tls = parser.add_argument_group("TLS for the gRPC endpoints (Triton and the profile service)")
    tls.add_argument("--tls", action="store_true",
                     help="serve gRPC over TLS with a self-signed certificate for localhost/127.0.0.1, made once "
                          "in <artifact-dir>.tls/ (clients take its cert.pem as their root certificate)")
    tls.add_argument("--tls-cert", type=Path, default=None, metavar="PEM",
                     help="serve gRPC over TLS with this certificate (chain) instead; needs --tls-key")
    tls.add_argument("--tls-key", type=Path, default=None, metavar="PEM", help="the private key of --tls-cert")


def add_keyring_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--keyring", type=Path, default=None, metavar="PATH", help=help_text)


def keyring_path(args) -> Path:
    """``--keyring``, else the keyring beside ``--artifact-dir`` (``ArtifactLayout.keyring``)."""
    return args.keyring or ArtifactLayout(args.artifact_dir).keyring


def serving_tls(args) -> TlsFiles | None:
    """The certificate both gRPC servers use: ``--tls-cert``/``--tls-key``, else ``--tls``'s self-signed pair beside
    the build (made on first use), else none (plaintext)."""
    cert, key = getattr(args, "tls_cert", None), getattr(args, "tls_key", None)
    if (cert is None) != (key is None):
        raise ValueError("--tls-cert and --tls-key go together: give both, or --tls for a self-signed pair")
    if cert is not None:
        return TlsFiles(cert, key)
    if getattr(args, "tls", False):
        return self_signed(tls_dir_for(args.artifact_dir))
    return None


def client_root_cert(tls: TlsFiles | None) -> Path | None:
    """What a client of this process's own server trusts: the served certificate (self-signed, or the chain file)."""
    return tls.cert if tls is not None else None


def server_config(args) -> TritonServerConfig:
    config = TritonServerConfig(artifact_dir=args.artifact_dir, grpc_port=args.grpc_port, http_port=args.http_port,
                                metrics_port=args.metrics_port, keyring_path=keyring_path(args),
                                tls=serving_tls(args), profile_url=getattr(args, "profile_url", None))
    if not getattr(args, "stub_watchdog", True):
        config.stub_watchdog = None
    cores = getattr(args, "profile_cpu", None)
    if cores:
        config.model_repository = profiled_repository(cores, config.runtime_dir)
    checkpoint = getattr(args, "generator_checkpoint", None)
    if checkpoint is not None:
        from recllm.pipeline import GENERATOR_DIR_ENV  # noqa: PLC0415

        config.extra_env[GENERATOR_DIR_ENV] = str(imported_generator(checkpoint, config))
    return config


def imported_generator(checkpoint: Path, config: TritonServerConfig) -> Path:
    """``checkpoint`` converted for the build's item codes into ``<runtime dir>/generator_checkpoint``
    (``recllm.generator.checkpoint_import``); the build's decoding settings are kept."""
    from recllm.artifacts import ArtifactLayout  # noqa: PLC0415
    from recllm.generator import GENERATOR_CONFIG_FILE, GeneratorConfig, ItemCodes  # noqa: PLC0415
    from recllm.generator.checkpoint_import import import_qwen2_checkpoint  # noqa: PLC0415

    checkpoint = Path(checkpoint)
    if not (checkpoint / "config.json").is_file():
        raise ValueError(f"--generator-checkpoint {checkpoint} is not a checkpoint folder (no config.json)")
    layout = ArtifactLayout(config.artifact_dir)
    layout.require_built()
    target = config.runtime_dir / "generator_checkpoint"
    decoding_file = layout.generator_dir / GENERATOR_CONFIG_FILE
    decoding = GeneratorConfig.load(decoding_file) if decoding_file.is_file() else None
    return import_qwen2_checkpoint(checkpoint, target, ItemCodes.load(layout.generator_dir), decoding)


def profiled_repository(cores: int, runtime_dir: Path) -> Path:
    """A copy of ``model_repository/`` whose configs use the ``--profile-cpu N`` preset (instances, intra-op
    threads, batch limits and queue delays per stage: ``ensemble.pipeline_graph.cpu_profile``)."""
    import shutil  # noqa: PLC0415

    from ensemble import pipeline_graph  # noqa: PLC0415 - serve only

    profile = pipeline_graph.cpu_profile(cores)
    target = Path(runtime_dir) / f"model_repository_cpu{cores}"
    shutil.rmtree(target, ignore_errors=True)
    for name in pipeline_graph.all_configs(profile):
        shutil.copytree(pipeline_graph.MODEL_REPOSITORY / name / "1", target / name / "1",
                        ignore=shutil.ignore_patterns("__pycache__"))
    pipeline_graph.write_configs(target, profile)
    return target


def add_profile_service_args(parser: argparse.ArgumentParser) -> None:
    from recllm.profile_service.config import ProfileServiceConfig  # noqa: PLC0415 - light: no torch, no gRPC

    defaults = ProfileServiceConfig()
    parser.add_argument("--profile-port", type=int, default=defaults.port,
                        help="port of the profile service (event ingest, profile read, forget)")
    parser.add_argument("--profile-ttl-cleanup-interval-s", type=float, default=defaults.ttl_cleanup_interval_s,
                        help="expire events past their service's TTL this often (default: off)")
    add_profile_url_arg(parser, "serve the profile from this PostgreSQL store (filled by `recllm build "
                                "--profile-url`); default: the artifact folder's SQLite file")


def add_profile_url_arg(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument("--profile-url", default=None, metavar="postgresql://…", help=help_text)


def profile_service_config(args, triton: TritonServerConfig):
    from recllm.profile_service.config import ProfileServiceConfig  # noqa: PLC0415

    triton_ports = {"--grpc-port": triton.grpc_port, "--http-port": triton.http_port,
                    "--metrics-port": triton.metrics_port}
    clash = [name for name, port in triton_ports.items() if port == args.profile_port]
    if clash:
        raise ValueError(f"--profile-port {args.profile_port} is also {clash[0]}: the ports must differ")
    return ProfileServiceConfig(artifact_dir=triton.artifact_dir, profile_url=args.profile_url,
                                bind_address=triton.bind_address, port=args.profile_port,
                                ttl_cleanup_interval_s=args.profile_ttl_cleanup_interval_s,
                                keyring_path=triton.keyring_path, tls=triton.tls)


def cmd_build(args) -> int:
    from builders.build_artifacts import BuildConfig, build  # noqa: PLC0415

    from recllm.artifacts import ArtifactLayout  # noqa: PLC0415

    before = ArtifactLayout(args.artifact_dir).read_manifest()
    layout = build(BuildConfig(preset=args.preset, output_dir=args.artifact_dir, force=args.force))
    evaluation = (layout.read_manifest() or {}).get("evaluation", {})
    print(f"artifacts ready in {layout.root}: {evaluation}")
    if getattr(args, "profile_url", None):
        publish_profile(layout, args.profile_url, rebuilt=args.force or layout.read_manifest() != before)
    return 0


def cmd_refresh_adapters(args) -> int:
    from builders.refresh_reply_layers import REFRESH_FILE, refresh_reply_adapters  # noqa: PLC0415
    from recllm.artifacts import ArtifactLayout  # noqa: PLC0415
    from recllm.profile.storage import PROFILE_URL_ENV  # noqa: PLC0415

    if args.profile_url:
        os.environ[PROFILE_URL_ENV] = args.profile_url
    report = refresh_reply_adapters(args.artifact_dir, progress=sys.stderr.isatty())
    served = sorted(user for user, r in report["refreshed"].items() if r["served"])
    print(f"{len(report['refreshed'])} of {report['heavy_users']} heavy users had new purchases: their reply "
          f"adapters were retrained in {report['seconds']:.0f} s; served with their own adapter now: "
          f"{', '.join(served) or 'none'} (the others get their segment mixture). Report: "
          f"{ArtifactLayout(args.artifact_dir).user_layers_dir / REFRESH_FILE}. A running server's generator re-reads "
          "the adapters folder every PersonalizerConfig.adapter_rescan_s (30 s; the CPU generator, not a TensorRT-LLM "
          "engine's LoRA cache).")
    return 0


def publish_profile(layout, url: str, rebuilt: bool) -> None:
    """Copy the build's profile into the PostgreSQL store at ``url`` — after a rebuild, or when that store holds no
    events yet; an up-to-date build leaves a filled store (and the events ingested into it since) alone."""
    from recllm.profile.postgres_store import redacted  # noqa: PLC0415
    from recllm.profile.profile_copy import copy_sqlite_profile  # noqa: PLC0415
    from recllm.profile.sqlite_store import ProfileStore  # noqa: PLC0415
    from recllm.profile.storage import open_profile_storage  # noqa: PLC0415

    if not url.startswith(("postgresql://", "postgres://")):
        raise ValueError(f"--profile-url must be a postgresql:// URL, got {redacted(url)!r}")
    with open_profile_storage(url) as target:
        if not rebuilt and target.latest_timestamp() is not None:
            print(f"profile in {redacted(url)} kept: the build is unchanged (--force rebuilds and replaces it)")
            return
        copied = copy_sqlite_profile(ProfileStore(layout.profile_db), target)
    print(f"profile published to {redacted(url)}: {copied['users']} users, {copied['events']} events")


def raise_keyboard_interrupt(*_signal_args) -> None:
    raise KeyboardInterrupt


def stop_on_signals() -> None:
    """SIGTERM/SIGHUP (and SIGINT, which background jobs ignore by default) end the command through the normal
    exit path, so the server is stopped even while it is still starting."""
    for stop_signal in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(stop_signal, raise_keyboard_interrupt)


def cmd_serve(args) -> int:
    from recllm.profile_service.server import ProfileServer, ProfileServiceError  # noqa: PLC0415 - serve only

    config = server_config(args)  # with --profile-url the Triton models get it as $RECLLM_PROFILE_URL
    profile_config = profile_service_config(args, config)
    stop_on_signals()
    with contextlib.ExitStack() as running:
        # The profile service starts first: it takes a second, and a taken port fails before Triton's long start.
        try:
            profile = ProfileServer(profile_config).start()
        except ProfileServiceError as exc:
            print(f"recllm serve: {exc}", file=sys.stderr)
            return 2
        running.callback(profile.stop)  # runs after Triton has stopped: no request reads a half-stopped service
        server = running.enter_context(TritonServer(config))
        grpc_kind = f"gRPC over TLS (root certificate {config.tls.cert})" if config.tls else "gRPC"
        print(f"Rec-LLM serving: {grpc_kind} {config.bind_address}:{config.grpc_port}, HTTP :{config.http_port}, "
              f"metrics :{config.metrics_port}/metrics (log: {server.log_path}); profile service "
              f"{profile.address} (event ingest, profile, forget); keyring {config.keyring_path}; stub watchdog "
              f"{'on' if server.watchdog else 'off'}. Ctrl-C stops.",
              flush=True)
        try:
            while server.process.poll() is None and profile.is_healthy():
                time.sleep(0.5)
        except KeyboardInterrupt:
            pass
        if server.process.poll() not in (None, 0):
            print(f"tritonserver exited unexpectedly:\n{server.log_tail()}", file=sys.stderr)
            return 1
        if not profile.is_healthy():
            print("the profile service's writer stopped unexpectedly (see the log above)", file=sys.stderr)
            return 1
    print("server stopped")
    return 0


def print_turn(user_id: str, message: str, turn) -> None:
    print(f"\n[{user_id}] > {message}")
    print(f"Rec-LLM ({turn.service}): {turn.reply}" if turn.service else f"Rec-LLM: {turn.reply}")
    for item in turn.items:
        why = "почему" if re.search("[а-яё]", item.explanation, re.IGNORECASE) else "why"
        print(f"  • {item.name} — {item.service}, {item.price:.0f} ₽\n      {why}: {item.explanation}")
    first = f"{turn.first_token_s * 1000:.0f} ms" if turn.first_token_s is not None else "-"
    print(f"  (first token {first}, full turn {turn.total_s * 1000:.0f} ms)")


def chat_root_cert(args) -> Path | None:
    """``--root-cert``; else the self-signed certificate ``recllm serve --tls`` made beside the build, if there is
    one (``--plaintext`` ignores it); else None: plaintext gRPC."""
    if args.plaintext:
        return None
    if args.root_cert is not None:
        if not Path(args.root_cert).is_file():
            raise FileNotFoundError(f"--root-cert {args.root_cert}: no such file")
        return args.root_cert
    default = tls_dir_for(args.artifact_dir) / CERT_NAME
    return default if default.is_file() else None


def cmd_chat(args) -> int:
    from recllm_client import RecLLMClient, RecLLMClientError  # noqa: PLC0415

    session = args.session or f"cli-{uuid.uuid4().hex[:12]}"
    root_cert = chat_root_cert(args)
    with RecLLMClient(args.url, keyring=keyring_path(args), root_cert=root_cert) as client:
        if not client.is_ready():
            how = (f"tried TLS trusting {root_cert}; --plaintext if the server runs without --tls" if root_cert
                   else "plaintext; --root-cert PEM if the server runs with --tls")
            print(f"no ready Rec-LLM server at {args.url} ({how}): start one with `recllm serve`", file=sys.stderr)
            return 1
        print(f"session {session} for user {args.user}; empty line or Ctrl-D quits")
        for line in sys.stdin:
            message = line.strip()
            if not message:
                break
            try:
                turn = client.chat(session, args.user, message, args.top_k, args.service)
            except RecLLMClientError as exc:
                print(f"error: {exc}")
                continue
            print_turn(args.user, message, turn)
    return 0


def pick_demo_user(artifact_dir: Path) -> str:
    """The user with the richest cross-service history (kuper vegetables / megamarket sport make journey 1)."""
    from recllm.artifacts import ArtifactLayout  # noqa: PLC0415
    from recllm.profile.sqlite_store import ProfileStore  # noqa: PLC0415

    store = ProfileStore(ArtifactLayout(artifact_dir).profile_db, read_only=True)
    row = store.connection().execute(
        "SELECT user_id FROM events WHERE kind = 'purchase' GROUP BY user_id "
        "ORDER BY COUNT(DISTINCT service) DESC, COUNT(*) DESC, user_id LIMIT 1"
    ).fetchone()
    return row[0]


def cmd_demo(args) -> int:
    from recllm_client import RecLLMClient  # noqa: PLC0415

    args.force, args.preset = False, "default"
    stop_on_signals()
    cmd_build(args)
    user_id = args.user or pick_demo_user(args.artifact_dir)
    with TritonServer(server_config(args)) as server, \
            RecLLMClient(server.config.grpc_url, keyring=server.config.keyring_path,
                         root_cert=client_root_cert(server.config.tls)) as client:
        session = f"demo-{uuid.uuid4().hex[:8]}"
        print(f"\nTriton is serving; a 3-turn conversation for user {user_id} (session {session}):")
        for service, message in DEMO_TURNS:
            print_turn(user_id, message, client.chat(session, user_id, message, args.top_k, service))
        cold = client.recommend("new-user-demo", "хочу что-нибудь вкусное", args.top_k, "samokat")
        print(f"\n[new user] > хочу что-нибудь вкусное\nRec-LLM ({cold.service}): {cold.reply}")
        for item in cold.items:
            print(f"  • {item.name} — {item.service}, {item.price:.0f} ₽ ({item.explanation})")
    print("\nserver stopped")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="recllm", description="Rec-LLM: conversational recommendations on Triton")
    sub = parser.add_subparsers(dest="command", required=True)

    build = sub.add_parser("build", help="build artifacts (data, encoder, indexes, reranker, generator)")
    build.add_argument("--preset", choices=("default", "test"), default="default")
    build.add_argument("--artifact-dir", type=Path, default=TritonServerConfig().artifact_dir)
    build.add_argument("--force", action="store_true")
    add_profile_url_arg(build, "also publish the built profile into this PostgreSQL store (replacing what it held) "
                               "for `recllm serve --profile-url`")
    build.set_defaults(func=cmd_build)

    serve = sub.add_parser("serve", help="run tritonserver and the profile service on the artifacts (foreground)")
    add_server_args(serve)
    serve.add_argument("--profile-cpu", type=int, default=None, metavar="N",
                       help="serving preset for an N-core node: instances, intra-op threads, dynamic-batch queue "
                            "delay per stage (docs/serving_profiles.md); default: the committed 2-core configs")
    add_profile_service_args(serve)
    serve.set_defaults(func=cmd_serve)

    chat = sub.add_parser("chat", help="interactive streamed chat against a running server")
    chat.add_argument("--user", required=True)
    chat.add_argument("--url", default=TritonServerConfig().grpc_url)
    chat.add_argument("--session", default=None)
    chat.add_argument("--service", default="", help="samokat | megamarket | kuper (empty: infer)")
    chat.add_argument("--top-k", type=int, default=5)
    chat.add_argument("--artifact-dir", type=Path, default=TritonServerConfig().artifact_dir,
                      help="the served build: its keyring and --tls certificate beside it are the defaults")
    add_keyring_arg(chat, "the keyring `recllm serve` uses (default: beside --artifact-dir); the chat signs a user "
                          "token per turn with it")
    chat.add_argument("--root-cert", type=Path, default=None, metavar="PEM",
                      help="connect over TLS trusting this certificate (default: the self-signed one `recllm serve "
                           "--tls` made beside --artifact-dir, when it exists)")
    chat.add_argument("--plaintext", action="store_true", help="plaintext gRPC even if a --tls certificate exists")
    chat.set_defaults(func=cmd_chat)

    refresh = sub.add_parser("refresh-adapters", help="retrain the reply adapters of the build's heavy users who "
                                                      "bought since their adapter was trained (a periodic job)")
    refresh.add_argument("--artifact-dir", type=Path, default=TritonServerConfig().artifact_dir)
    add_profile_url_arg(refresh, "read the profile from this PostgreSQL store (the one `recllm serve --profile-url` "
                                 "serves) instead of the build's SQLite file")
    refresh.set_defaults(func=cmd_refresh_adapters)

    demo = sub.add_parser("demo", help="build if needed, serve, run a 3-turn conversation, stop")
    add_server_args(demo)
    demo.add_argument("--user", default=None)
    demo.add_argument("--top-k", type=int, default=5)
    demo.set_defaults(func=cmd_demo)

    keys = sub.add_parser("keys", help="the keyring user tokens are signed and verified with")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True)
    rotate = keys_sub.add_parser("rotate", help="add a new newest key (tokens are signed with it from now on) and "
                                               "keep only the newest --keep keys; running servers re-read the file")
    rotate.add_argument("--keep", type=int, default=2,
                        help="keys kept per list, the new one included (>= 2: tokens in flight stay valid)")
    rotate.add_argument("--artifact-dir", type=Path, default=TritonServerConfig().artifact_dir)
    add_keyring_arg(rotate, "the keyring file to rotate in place (default: beside --artifact-dir)")
    rotate.set_defaults(func=cmd_keys_rotate)

    evaluation = sub.add_parser("eval", help="quality protocols: Amazon leave-one-out, Food-Kitchen, Ta-Feng, synthetic")
    add_eval_arguments(evaluation)
    evaluation.set_defaults(func=cmd_eval)
    return parser


def cmd_keys_rotate(args) -> int:
    """Rotate the keyring file in place: atomic replace, mode 0600. Prints key ids only, never a secret."""
    from recllm_proto.user_token import load_keyring, save_keyring  # noqa: PLC0415

    path = keyring_path(args)
    rotated = load_keyring(path).rotated(keep=args.keep)
    save_keyring(path, rotated)
    kids = [key.kid for key in rotated.token_keys]
    print(f"keyring {path} rotated: tokens are signed with {kids[-1]} and verified with {', '.join(kids)}; "
          f"stage keys {', '.join(key.kid for key in rotated.stage_keys)}. Running servers pick it up on their next "
          "request; give calling backends the new file.")
    return 0


def cmd_eval(args) -> int:
    from recllm.evaluation.cli_eval import run_eval  # noqa: PLC0415  (torch-heavy; only this command needs it)

    logging.getLogger("recllm").setLevel(logging.INFO)   # training progress
    return run_eval(args)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (TritonServerError, TlsError, FileNotFoundError, ValueError) as exc:
        print(f"recllm {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"recllm {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
