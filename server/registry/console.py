"""`tinysphere keys ...` and `tinysphere bundle ...`: the operator's offline half of the registry."""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
import tempfile
from pathlib import Path
from typing import Any
from urllib.parse import quote

from server.errors import InputError
from server.registry import bundle_archive, keys, offline
from server.registry.client import RegistryClient, _detail


def _say(message: str) -> None:
    sys.stdout.write(message + "\n")


class _Client(RegistryClient):
    """The registry client, with a progress bar on stderr over each upload."""

    def upload(self, target_path: str, tar: Path, sha256: str) -> None:
        from tqdm import tqdm
        from tqdm.utils import CallbackIOWrapper

        size = tar.stat().st_size
        with tar.open("rb") as body, tqdm(total=size, unit="B", unit_scale=True, unit_divisor=1024,
                                          desc=target_path.rsplit("/", 1)[-1], file=sys.stderr) as bar:
            response = self._request("PUT", f"/api/v1/registry/uploads/{quote(target_path)}",
                                     body=CallbackIOWrapper(bar.update, body, "read"),
                                     headers={"X-Content-SHA256": sha256, "Content-Type": "application/x-tar",
                                              "Content-Length": str(size)})
        if response.status == 404:
            raise InputError(f"upload refused: {_detail(response)}")


def _client(args: argparse.Namespace) -> RegistryClient | None:
    if not args.server:
        return None
    if not args.token:
        raise InputError("--token (or TINYSPHERE_TOKEN) is needed with --server")
    return _Client(args.server, args.token)


def _push_root(client: RegistryClient, root: bytes, targets: bytes | None = None) -> None:
    payload: dict[str, Any] = {"metadata": root.decode()}
    if targets is not None:
        payload["targets"] = targets.decode()
    answer = client.send("PUT", "/api/v1/registry/root", payload)
    _say(f"server now serves root version {answer['version']}")


def keys_init(args: argparse.Namespace) -> int:
    out = Path(args.out)
    root = offline.init(out, args.root_keys, args.root_threshold, args.expires_days)
    _say(f"keys and root.json (version 1) written to {out}; install snapshot.key and timestamp.key on the "
          "server, keep the root and targets keys offline")
    client = _client(args)
    if client:
        _push_root(client, root)
    return 0


def keys_push(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        raise InputError("--server (or TINYSPHERE_URL) is required")
    _push_root(client, (Path(args.dir) / "root.json").read_bytes())
    return 0


def keys_rotate(args: argparse.Namespace) -> int:
    directory = Path(args.dir)
    client = _client(args)
    if args.role == "root":
        root, targets = offline.rotate_root(directory, args.root_keys, args.root_threshold, args.expires_days), None
    else:
        current = client.metadata("targets") if client else None
        root, targets = offline.rotate_targets(directory, current, args.expires_days)
    _say(f"root version {offline.current_root(directory).signed.version} written to {directory}")
    if client:
        _push_root(client, root, targets)
    return 0


def bundle_build(args: argparse.Namespace) -> int:
    out = Path(args.out)
    with tempfile.NamedTemporaryFile(dir=out.parent or Path("."), prefix=".tmp-", delete=False) as tmp:
        info = bundle_archive.build(Path(args.dir), tmp)
    os.replace(tmp.name, out)
    _say(f"{out}: {info.target_path}")
    return 0


def bundle_publish(args: argparse.Namespace) -> int:
    client = _client(args)
    if client is None:
        raise InputError("--server (or TINYSPHERE_URL) is required")
    with tempfile.TemporaryDirectory(prefix="tinysphere-publish-") as tmp:
        lineage = None
        if args.from_mlflow:
            from server.registry.lineage import bundle_from_mlflow

            tar, lineage = bundle_from_mlflow(args.from_mlflow, args.mlflow_uri, Path(tmp))
        elif args.bundle:
            tar = Path(args.bundle)
        else:
            raise InputError("give a bundle tar or --from-mlflow")
        published = _publish(client, tar, keys.load(_targets_key(args)), args.expires_days, lineage)
        if lineage is not None and published is not None:
            from server.registry.lineage import tag_model_version

            tag_model_version(args.mlflow_uri, lineage, *published)
    return 0


def _targets_key(args: argparse.Namespace) -> Path:
    """--key, else the development set's targets key in the data directory (with a warning), else an error."""
    if args.key:
        return Path(args.key)
    tuf_dir = Path(args.data_dir or os.environ.get("TINYSPHERE_DATA_DIR") or "tinysphere-data") / "tuf"
    if not offline.development_keyids(tuf_dir):
        raise InputError(f"--key is required: {tuf_dir} holds no development key set (give the offline targets key)")
    sys.stderr.write(f"tinysphere: warning: signing with the DEVELOPMENT targets key in {tuf_dir} "
                     "(not for production)\n")
    return tuf_dir / "targets.key"


def _publish(client: RegistryClient, tar: Path, signer: Any, expires_days: int,
             lineage: dict[str, str] | None) -> tuple[str, str] | None:
    """Publish a bundle tar; returns its (target path, sha256), or None if it was already published."""
    with tar.open("rb") as source:
        info = bundle_archive.read(source)
    target, files = offline.target_file(info, tar), offline.file_targets(info)
    current = client.metadata("targets")
    signed = offline.add_target(current, target, signer, expires_days, files)
    if signed is None:
        _say(f"{target.path} is already published")
        return None
    with tempfile.TemporaryDirectory(prefix="tinysphere-files-") as unpacked:  # each new file, as its own target
        paths = bundle_archive.extract(tar, Path(unpacked))
        by_target = {entry["target"]: (paths[name], entry["sha256"]) for name, entry in info.file_list().items()}
        for file in offline.new_files(current, files):
            client.upload(file.path, *by_target[file.path])
    with tar.open("rb") as source:
        sha256 = hashlib.file_digest(source, "sha256").hexdigest()
    client.upload(target.path, tar, sha256)
    payload: dict[str, Any] = {"metadata": signed.decode(), "lineage": lineage}
    bundles = client.send("POST", "/api/v1/registry/publish", payload)
    for bundle in bundles:
        _say(f"published {bundle['target_path']} ({bundle['sha256'][:12]}…)")
    return target.path, sha256


def _server_options(parser: argparse.ArgumentParser, role: str) -> None:
    parser.add_argument("--server", default=os.environ.get("TINYSPHERE_URL"),
                        help="API base URL (default: $TINYSPHERE_URL)")
    parser.add_argument("--token", default=os.environ.get("TINYSPHERE_TOKEN"),
                        help=f"API token with the {role} role (default: $TINYSPHERE_TOKEN)")
    parser.add_argument("--expires-days", type=int, default=365,
                        help="lifetime of the signed metadata in days (default 365)")


def add_commands(commands: Any) -> None:
    """Register `keys` and `bundle` on the top-level sub-parsers."""
    key_cmds = commands.add_parser("keys", help="offline TUF keys").add_subparsers(dest="action", required=True)
    init = key_cmds.add_parser("init", help="create root, targets and online keys and root version 1")
    init.add_argument("--out", required=True, help="new directory for the keys and root.json")
    init.add_argument("--root-keys", type=int, default=3, help="number of root keys (default 3)")
    init.add_argument("--root-threshold", type=int, default=2,
                      help="root keys needed to sign a new root (default 2)")
    _server_options(init, "admin")
    init.set_defaults(run=keys_init)
    push = key_cmds.add_parser("push-root", help="upload the newest root.json of a key directory")
    push.add_argument("--dir", required=True, help="the key directory of `keys init`")
    _server_options(push, "admin")
    push.set_defaults(run=keys_push)
    rotate = key_cmds.add_parser("rotate", help="replace the root keys or the targets key")
    rotate.add_argument("role", choices=["root", "targets"], help="which keys to replace")
    rotate.add_argument("--dir", required=True, help="the key directory of `keys init`")
    rotate.add_argument("--root-keys", type=int, default=3, help="number of new root keys (default 3)")
    rotate.add_argument("--root-threshold", type=int, default=2,
                        help="root keys needed to sign a new root (default 2)")
    _server_options(rotate, "admin")
    rotate.set_defaults(run=keys_rotate)

    bundle_cmds = commands.add_parser("bundle", help="model bundles").add_subparsers(dest="action", required=True)
    build = bundle_cmds.add_parser("build", help="make a bundle tar from a bundle directory")
    build.add_argument("dir", help="bundle directory (bundle.json, model and its files)")
    build.add_argument("--out", required=True, help="the bundle tar to write")
    build.set_defaults(run=bundle_build)
    publish = bundle_cmds.add_parser("publish", help="sign a bundle offline and publish it")
    publish.add_argument("bundle", nargs="?", help="bundle tar of `bundle build` (or give --from-mlflow)")
    publish.add_argument("--key", help="the targets key file (default: the development key set of --data-dir, "
                         "which zero-configuration `serve` creates)")
    publish.add_argument("--data-dir", help="the server's data directory, for its development key set (default: "
                         "$TINYSPHERE_DATA_DIR, else ./tinysphere-data)")
    publish.add_argument("--from-mlflow", metavar="models:/NAME@ALIAS", help="build the bundle from this model version")
    publish.add_argument("--mlflow-uri", default=os.environ.get("MLFLOW_TRACKING_URI"),
                         help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI)")
    _server_options(publish, "operator")
    publish.set_defaults(run=bundle_publish)
