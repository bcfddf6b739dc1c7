"""The ``cxr`` command: arguments in, one call per subcommand, exit codes out."""

from __future__ import annotations

import argparse
import sys

from . import __version__, account, cohorts, config, exports, models
from .api import AUTH, USAGE, Api, CliError
from .output import Output

EPILOG = """exit codes: 0 done, 1 failed or refused, 2 bad input, 3 not logged in or token refused,
4 not allowed (e.g. no Weights tier), 5 not found or expired, 6 server unreachable or unavailable.
environment: CXR_URL, CXR_TOKEN and CXR_CONFIG override the saved login (~/.config/cxr/config.json)."""


def _common(parser: argparse.ArgumentParser, *, top: bool) -> None:
    # Accepted before and after the subcommand; SUPPRESS keeps the subparser from resetting a value given before.
    default = (lambda value: value) if top else (lambda value: argparse.SUPPRESS)
    parser.add_argument("--json", action="store_true", default=default(False),
                        help="print the result as JSON on stdout (progress and remarks go to stderr)")
    parser.add_argument("--quiet", "-q", action="store_true", default=default(False),
                        help="no progress bars or remarks")
    parser.add_argument("--url", default=default(None), help="the platform's address (default: saved at login)")


def _waiting(parser: argparse.ArgumentParser, interval: float = 2.0) -> None:
    parser.add_argument("--interval", type=float, default=interval, help="seconds between status checks")
    parser.add_argument("--timeout", type=float, default=None, help="give up waiting after this many seconds")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be a whole number from 1")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cxr", description="Command-line client for cxr-platform.", epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"cxr {__version__}")
    _common(parser, top=True)
    groups = parser.add_subparsers(dest="group", metavar="COMMAND")
    groups.required = True

    def command(subparsers, name: str, handler, help_text: str, *, needs_api: bool = True):
        sub = subparsers.add_parser(name, help=help_text, description=help_text)
        _common(sub, top=False)
        sub.set_defaults(handler=handler, needs_api=needs_api)
        return sub

    login = command(groups, "login", account.login, "check an API token and save it with the server's address",
                    needs_api=False)
    login.add_argument("--token", help="the API token (else $CXR_TOKEN, else asked for, or read from stdin)")
    command(groups, "logout", account.logout, "forget the saved token", needs_api=False)
    command(groups, "whoami", account.whoami, "the account the saved token acts as")

    cohort = groups.add_parser("cohort", help="synthetic cohorts").add_subparsers(dest="action", metavar="ACTION")
    cohort.required = True
    create = command(cohort, "create", cohorts.create, "request a cohort described in a YAML (or JSON) file")
    create.add_argument("spec", metavar="SPEC.yaml")
    create.add_argument("--wait", action="store_true", help="follow its progress until it is done")
    create.add_argument("--idempotency-key", help="repeat a request safely (default: a fresh random key)")
    _waiting(create)
    listing = command(cohort, "list", cohorts.list_, "your cohorts, newest first")
    listing.add_argument("--limit", type=_positive, default=50)
    listing.add_argument("--offset", type=int, default=0)
    for name, handler, text in (("show", cohorts.show, "one cohort's status and progress"),
                                ("cancel", cohorts.cancel, "stop a queued or running cohort")):
        command(cohort, name, handler, text).add_argument("id", type=int, metavar="ID")
    waiting = command(cohort, "wait", cohorts.wait_command, "follow a cohort until it is done")
    waiting.add_argument("id", type=int, metavar="ID")
    _waiting(waiting)

    export = groups.add_parser("export", help="DICOM exports").add_subparsers(dest="action", metavar="ACTION")
    export.required = True
    create = command(export, "create", exports.create, "export a cohort as signed DICOM")
    create.add_argument("--cohort", type=int, required=True, metavar="N")
    create.add_argument("--png", action="store_true", help="include a PNG of every image")
    create.add_argument("--transfer-syntax", choices=["explicit", "jpegls", "rle"],
                        help="explicit (uncompressed, default), jpegls (lossless, about 3x smaller) or rle")
    create.add_argument("--wait", action="store_true", help="follow the build until the package is ready")
    create.add_argument("--download", metavar="DIR", help="then download it into DIR (implies --wait)")
    create.add_argument("--idempotency-key", help="repeat a request safely (default: a fresh random key)")
    _waiting(create, interval=1.0)
    listing = command(export, "list", exports.list_, "a cohort's exports")
    listing.add_argument("--cohort", type=int, required=True, metavar="N")
    listing.add_argument("--limit", type=_positive, default=50)
    command(export, "show", exports.show, "one export's status").add_argument("id", type=int, metavar="ID")
    fetch = command(export, "download", exports.download_command,
                    "download a ready export (resumes a partial download, checks the SHA-256)")
    fetch.add_argument("id", type=int, metavar="ID")
    fetch.add_argument("--dir", default=".", metavar="DIR")
    fetch.add_argument("--wait", action="store_true", help="wait for the build first")
    _waiting(fetch, interval=1.0)
    check = command(export, "verify", exports.verify,
                    "check a package's signature and files offline against the published key", needs_api=False)
    check.add_argument("path", metavar="PATH", help="the package zip or its unzipped folder")
    key = check.add_mutually_exclusive_group()
    key.add_argument("--public-key", metavar="KEY.pem", help="the published key (default: the one saved at login)")
    key.add_argument("--fingerprint", metavar="HEX", help="the published key's SHA-256 fingerprint")
    command(export, "signing-key", exports.signing_key, "the platform's published signing key").add_argument(
        "--output", "-o", metavar="FILE", help="save the PEM here")

    model = groups.add_parser("models", help="model versions and weights").add_subparsers(dest="action",
                                                                                          metavar="ACTION")
    model.required = True
    command(model, "list", models.list_, "model versions open to you")
    fetch = command(model, "download", models.download_command,
                    "download a model version's weights (Weights tier; resumable, SHA-256 checked)")
    fetch.add_argument("version", type=int, nargs="?", metavar="ID", help="default: the newest you may download")
    fetch.add_argument("--dir", default=".", metavar="DIR")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    out = Output(as_json=args.json, quiet=args.quiet)
    api = None
    try:
        if not args.needs_api:
            return args.handler(args, out)
        current = config.settings(args.url)
        if not current.token:
            raise CliError("Not logged in: run `cxr login` (or set CXR_TOKEN).", AUTH)
        api = Api(current.url, current.token)
        return args.handler(args, out, api)
    except CliError as error:
        out.error(error.message, exit_code=error.exit_code, status=error.status, payload=error.payload)
        return error.exit_code
    except config.ConfigError as error:
        out.error(str(error), exit_code=USAGE)
        return USAGE
    except KeyboardInterrupt:
        out.error("Interrupted. A download resumes where it stopped when you run the same command again.",
                  exit_code=130)
        return 130
    finally:
        if api is not None:
            api.close()


if __name__ == "__main__":
    sys.exit(main())
