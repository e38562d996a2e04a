"""`kist-harness deploy push|verify|rollback HOST...`: a patched tor onto relay hosts, safely."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from harness.errors import InputError


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("deploy", help="push a tor build to relay hosts over SSH, verify, roll back",
                       description="Deploy to hosts from an inventory over SSH (host keys verified). "
                       "Any failure after the switch rolls back to the previous binary and config.")
    acts = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (("push", "upload (or build on the host), switch, verify through the control port"),
                       ("verify", "check the running release through the control port"),
                       ("rollback", "go back to the previous binary and config")):
        a = acts.add_parser(name, help=text, description=text)
        a.add_argument("hosts", nargs="+", metavar="HOST", help="host names from the inventory")
        a.add_argument("--inventory", type=Path, metavar="FILE", help="inventory TOML file (default: "
                       "$KIST_HARNESS_INVENTORY, else ./inventory.toml)")
        a.add_argument("--accept-new-host-key", action="store_true",
                       help="trust and record an unknown host key (logged); a changed key is still refused")
        a.add_argument("--parallel", type=int, default=8, help="hosts at a time (default 8)")
        if name == "push":
            what = a.add_mutually_exclusive_group(required=True)
            what.add_argument("--binary", type=Path, help="a tor built locally for the hosts' system")
            what.add_argument("--source", type=Path, help="a tor source tarball to build on the host")
            a.add_argument("--patches", type=Path, help="quilt directory (with `series`) for --source")
            a.add_argument("--schedulers", default="KIST", help="torrc Schedulers (default KIST)")
            a.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                           help="another torrc option for the fragment (repeatable)")
            a.add_argument("--patch-hash", help="patch series hash the relay must report")
            a.add_argument("--built-for", help='system the binary was built for (default: this one, e.g. "debian 12")')
        a.set_defaults(func=_deploy)


def _settings(args: argparse.Namespace) -> Any:
    from harness.remote.deploy import Settings

    options = []
    for text in args.option:
        key, sep, value = text.partition("=")
        if not sep:
            raise InputError(f"--option {text!r}: write KEY=VALUE, e.g. KISTSchedRunInterval=2.")
        options.append((key.strip(), value.strip()))
    return Settings(args.schedulers, tuple(options))


def series(patches: Path | None) -> list[Path]:
    """The patch files named by a quilt ``series`` file, in order."""
    if patches is None:
        return []
    index = patches / "series"
    try:
        names = [line.split("#")[0].split()[0] for line in index.read_text().splitlines()
                 if line.split("#")[0].strip()]
    except OSError as exc:
        raise InputError(f"--patches {patches}: cannot read {index} ({exc.strerror}); give a quilt "
                         "directory with a series file.") from exc
    missing = [n for n in names if not (patches / n).is_file()]
    if missing:
        raise InputError(f"{index} names patches that do not exist: {', '.join(missing)}.")
    return [patches / n for n in names]


def _deploy(args: argparse.Namespace) -> int:
    from harness.remote import deploy, inventory, ssh

    inv = inventory.load(inventory.locate(args.inventory))
    hosts = [inv.get(name) for name in args.hosts]
    if args.action == "push":
        settings = _settings(args)
        patch_files = series(args.patches)
        for path in (args.binary, args.source):
            if path is not None and not path.is_file():
                raise InputError(f"{path}: no such file.")

    def one(host: Any) -> str:
        with ssh.connect(host, accept_new_host_key=args.accept_new_host_key) as session:
            if args.action == "rollback":
                state = deploy.rollback(session)
                return f"rolled back to {state.get('current')}"
            if args.action == "verify":
                v = deploy.verify(session, deploy.expected_release(session))
            else:
                if args.binary:
                    out = deploy.push_binary(session, args.binary, settings,
                                             patch_hash=args.patch_hash, built_for=args.built_for)
                else:
                    out = deploy.push_source(session, args.source, patch_files, settings,
                                             patch_hash=args.patch_hash)
                v = out.verification
            return (f"tor {v.version}, patch {v.patch_hash or '-'}, Schedulers {v.schedulers}, "
                    f"bootstrap {v.bootstrap}% ({v.bootstrap_s:.0f} s), "
                    f"control on {', '.join(v.control_listeners)}")

    try:
        results = ssh.on_hosts(hosts, one, max_workers=args.parallel)
    except ssh.HostsFailed as exc:
        for name, text in exc.results.items():
            print(f"{name}: {text}")
        raise
    for name, text in results.items():
        print(f"{name}: {text}")
    return 0
