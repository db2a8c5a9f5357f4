"""`python -m fs_lazy mount ...`: the process that serves one lazily mounted image."""
from __future__ import annotations

import argparse
import logging


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m fs_lazy")
    sub = parser.add_subparsers(dest="command", required=True)
    mount = sub.add_parser("mount", help="serve an image over FUSE until unmounted")
    mount.add_argument("--store", required=True, help="store URL: file:///dir, s3://bucket/prefix, oci://ns/bucket/prefix")
    mount.add_argument("--manifest", required=True, help="digest of the image manifest")
    mount.add_argument("--cache", required=True, help="local chunk cache directory")
    mount.add_argument("--cache-max-bytes", type=int, default=8 << 30)
    mount.add_argument("--working-set", default=None, help="file to record the working set to and prefetch from")
    mount.add_argument("--ready-file", default=None)
    mount.add_argument("mountpoint")
    sub.add_parser("launcher", help="fork a mount server per request read from stdin (see fs_lazy._launcher)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, format="fs_lazy: %(message)s")
    if args.command == "launcher":
        from ._launcher import run_launcher

        run_launcher()
        return
    from ._mount import serve

    serve(args.store, args.manifest, args.mountpoint, args.cache, args.cache_max_bytes, args.working_set,
          args.ready_file)


if __name__ == "__main__":
    main()
