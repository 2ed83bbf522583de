"""`meshc ca init DIR` and `meshc ca issue SPEC --ca DIR -o TLSDIR`: a development CA and the
workload certificates of a mesh, for hosts, VMs and tests (in a cluster, cert-manager issues them)."""

from __future__ import annotations

import argparse
import base64
import datetime
import sys
from pathlib import Path

from meshc.commands.common import EXIT_INVALID, EXIT_OK, EXIT_USAGE, add_spec_argument, check_from_args
from meshc.durations import parse_duration

NAME = "ca"
HELP = "a development certificate authority and workload certificates for mTLS (hosts, VMs, tests)"


def register(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="ca_action", metavar="ACTION", required=True,
                                    parser_class=type(parser))
    init = actions.add_parser("init", help="create a CA in DIR (ca.crt, ca.key) and ca-secret.yaml, the "
                              "Secret meshc's cert-manager Issuer reads")
    init.add_argument("directory", metavar="DIR")
    init.add_argument("--namespace", metavar="NS", help="the Secret's namespace (the mesh's); default: none, "
                      "so `kubectl apply -n NS` places it")
    init.add_argument("--force", action="store_true", help="replace a CA that DIR already holds")
    init.set_defaults(run=run_init)
    issue = actions.add_parser("issue", help="write TLSDIR/<service>/{tls.crt,tls.key,ca.crt} for every deployed "
                               "service of SPEC, signed by the CA in --ca")
    add_spec_argument(issue)
    issue.add_argument("--ca", required=True, metavar="DIR", help="the CA directory `meshc ca init` made")
    issue.add_argument("-o", "--output", required=True, metavar="TLSDIR")
    issue.add_argument("--validity", default="24h", type=_duration, metavar="DURATION",
                       help="how long the certificates are valid (default 24h)")
    issue.add_argument("--service", action="append", default=[], metavar="NAME",
                       help="only this service (repeatable)")
    issue.set_defaults(run=run_issue, format="text", strict=False, envoy_host=[])


def _duration(text: str) -> datetime.timedelta:
    try:
        return datetime.timedelta(milliseconds=parse_duration(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:   # the sub-action's run replaces this one
    return EXIT_USAGE


def run_init(args: argparse.Namespace) -> int:
    from meshc import certs

    directory = Path(args.directory)
    if (directory / certs.CA_KEY).exists() and not args.force:
        sys.stderr.write(f"meshc: error: {directory} already holds a CA; --force replaces it\n")
        return EXIT_INVALID
    authority = certs.new_authority()
    try:
        certs.write_authority(authority, directory)
        certs.write_file(directory / "ca-secret.yaml", _secret_manifest(authority, args.namespace).encode())
    except OSError as exc:
        sys.stderr.write(f"meshc: error: cannot write {directory}: {exc}\n")
        return EXIT_USAGE
    sys.stderr.write(f"meshc: wrote a CA to {directory} (ca.crt, ca.key, ca-secret.yaml)\n")
    return EXIT_OK


def _secret_manifest(authority: object, namespace: str | None) -> str:
    """The kubernetes.io/tls Secret meshc's Issuer (kind CA) signs with."""
    from meshc import certs, render
    from meshc.emit import naming

    assert isinstance(authority, certs.Authority)
    encoded = {key: base64.b64encode(value).decode() for key, value in (
        ("tls.crt", authority.certificate_pem), ("tls.key", certs.key_pem(authority.key)),
        ("ca.crt", authority.certificate_pem))}
    metadata: dict[str, object] = {"name": naming.CA_SECRET}
    if namespace:
        metadata["namespace"] = namespace
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": metadata, "type": "kubernetes.io/tls",
              "data": encoded}
    return render.file([secret]).decode()


def run_issue(args: argparse.Namespace) -> int:
    from meshc import certs

    try:
        authority = certs.read_authority(Path(args.ca))
    except certs.CertificateError as exc:
        sys.stderr.write(f"meshc: error: {exc}\n")
        return EXIT_USAGE
    checked = check_from_args(args)
    if not checked.ok or checked.mesh is None:
        sys.stderr.write("meshc: the spec is not valid; no certificates written\n")
        return EXIT_INVALID
    mesh = checked.mesh
    trust_domain = mesh.security.trust_domain if mesh.security else "cluster.local"
    # Workloads with an identity: every deployed service, and every gateway (`gateway-<name>`).
    workloads = [s.name for s in mesh.deployed_services] + [f"gateway-{g.name}" for g in mesh.gateways]
    services = [name for name in workloads if not args.service or name in args.service]
    unknown = sorted(set(args.service) - set(workloads))
    if unknown:
        sys.stderr.write(f"meshc: error: no deployed service called {', '.join(unknown)}\n")
        return EXIT_USAGE
    output = Path(args.output)
    try:
        for name in services:
            spiffe = f"spiffe://{trust_domain}/ns/{mesh.namespace}/sa/{name}"
            certificate, key = certs.issue(authority, spiffe, args.validity)
            certs.write_workload(output / name, certificate, key, authority.certificate_pem)
    except OSError as exc:
        sys.stderr.write(f"meshc: error: cannot write {output}: {exc}\n")
        return EXIT_USAGE
    sys.stderr.write(f"meshc: wrote certificates for {len(services)} services to {output}\n")
    return EXIT_OK
