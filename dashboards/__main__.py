"""Command line of the dashboards: `python -m dashboards <command>`.

  up          install, set up and serve Superset in the foreground (`make dashboards`)
  setup       install and set up only (venv, metadata, admin, dashboards, branch roles)
  serve       serve an already set-up Superset in the foreground
  install     create the Superset venv from the lock (--browser: also Chromium for the tests)
  bundle OUT  write the import ZIP (placeholders filled) for a manual import in the UI
  add-user    create or update a user with Gamma + the given roles; password from stdin

Errors are printed as one clear message (exit code 2), never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import sys
from pathlib import Path

from dashboards import access, bundle, config, import_values, install, provision, server
from spm_warehouse import environment, settings
from spm_warehouse.console import run_command
from spm_warehouse.embedded_postgres import EmbeddedPostgresError


def _configure() -> config.SupersetPaths:
    environment.configure()
    return config.paths()


def _print_summary(p: config.SupersetPaths, summary: dict) -> None:
    imported = summary.get("imported", {})
    print(f"  dashboards: {imported.get('dashboards')}, charts: {imported.get('charts')}, "
          f"datasets: {imported.get('datasets')} (imported from {config.ASSETS_DIR})")
    pruned = {k: v for k, v in (summary.get("pruned") or {}).items() if v}
    if pruned:
        print("  deleted what the repository dropped: " + ", ".join(f"{v} {k}" for k, v in pruned.items()))
    for item in summary.get("access", {}).get("applied", []):
        print(f"  branch role {item['role']!r}: {item['clause']} on {item['datasets_filtered']} datasets")
    for name in summary.get("access", {}).get("removed", []):
        print(f"  removed stale branch filter {name!r}")
    print(f"  branch roles vs warehouse: {summary.get('branch_check')}")
    for note in summary.get("import_values") or []:
        print(f"  {note}")
    pre = summary.get("preflight") or {}
    if not pre.get("ok", True):
        print(f"WARNING: Superset cannot read {provision.PREFLIGHT_TABLE} as {config.BI_ROLE}: {pre.get('error')}\n"
              "         Build and publish the warehouse first (make demo); the dashboards stay empty until then.")
    admin_source = ("SPM_SUPERSET_ADMIN_PASSWORD" if settings.get("SPM_SUPERSET_ADMIN_PASSWORD")
                    else str(p.home / "admin_password"))
    print(f"  admin user: {config.admin_user()} (password: {admin_source})")


def cmd_setup(args: argparse.Namespace) -> int:
    p = _configure()
    summary = provision.provision(p, do_install=not args.no_install)
    print("Superset is set up:")
    _print_summary(p, summary)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    p = config.paths()
    host, port = settings.get("SPM_SUPERSET_HOST"), settings.get_int("SPM_SUPERSET_PORT")
    if not server.port_free(host, port):
        raise provision.ProvisionError(f"{host}:{port} is already in use (another Superset?); "
                                       "stop it or choose another port with SPM_SUPERSET_PORT")
    print(f"Superset: http://{host}:{port}  (Ctrl-C stops it)", flush=True)
    server.serve_foreground(p, host, port)
    return 0


def cmd_up(args: argparse.Namespace) -> int:
    cmd_setup(args)
    return cmd_serve(args)


def cmd_install(args: argparse.Namespace) -> int:
    p = config.paths()
    installed = install.ensure_venv(p)
    print(f"Superset venv {p.venv}: {'installed' if installed else 'up to date'}")
    if args.browser:
        print("Chromium: " + ("installed" if install.ensure_browser() else "present"))
    return 0


def cmd_bundle(args: argparse.Namespace) -> int:
    environment.configure()
    values = import_values.import_values()
    out = bundle.write_bundle(Path(args.out), config.warehouse_placeholders(), **values.bundle_kwargs())
    for note in values.notes:
        print(f"  {note}")
    print(f"wrote {out} (it holds the warehouse password: mode 0600, do not share)")
    return 0


def cmd_add_user(args: argparse.Namespace) -> int:
    p = config.paths()
    password = sys.stdin.readline().rstrip("\n") if not sys.stdin.isatty() else getpass.getpass("Password: ")
    if len(password) < 8:
        raise provision.ProvisionError("the password must have at least 8 characters")
    user = provision.NewUser(username=args.username, password=password, roles=args.role, email=args.email or "")
    result = provision.add_users(p, [user])
    print(f"user {args.username}: {result['users'][args.username]} (roles: Gamma, {', '.join(args.role)})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dashboards", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name, func, text in (("up", cmd_up, "install, set up and serve (make dashboards)"),
                             ("setup", cmd_setup, "install and set up only")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--no-install", action="store_true", help="use the existing venv (docker image)")
        p.set_defaults(func=func)
    sub.add_parser("serve", help="serve in the foreground").set_defaults(func=cmd_serve)
    p = sub.add_parser("install", help="create the Superset venv from the lock")
    p.add_argument("--browser", action="store_true", help="also install Chromium + chromedriver (Debian, root)")
    p.set_defaults(func=cmd_install)
    p = sub.add_parser("bundle", help="write the import ZIP")
    p.add_argument("out")
    p.set_defaults(func=cmd_bundle)
    p = sub.add_parser("add-user", help="create or update a user (password on stdin)")
    p.add_argument("--username", required=True)
    p.add_argument("--role", action="append", default=[], help="a branch role from branch_access.yaml (repeatable)")
    p.add_argument("--email")
    p.set_defaults(func=cmd_add_user)
    return run_command(parser.parse_args(argv), (
        provision.ProvisionError, install.InstallError, server.SupersetError, bundle.BundleError,
        access.AccessConfigError, import_values.ImportValuesError, EmbeddedPostgresError, LookupError))


if __name__ == "__main__":
    sys.exit(main())
