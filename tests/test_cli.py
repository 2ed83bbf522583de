"""The meshc command as users run it: exit codes, output formats, no tracebacks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
SHOP = ROOT / "examples" / "shop" / "mesh.yaml"
BAD = ROOT / "tests" / "cases" / "invalid" / "E201-unknown-upstream" / "mesh.yaml"
WARN = ROOT / "tests" / "cases" / "invalid" / "W201-retries-exceed-timeout" / "mesh.yaml"


def meshc(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "meshc.cli", *args], capture_output=True, text=True,
                          cwd=cwd or ROOT, timeout=60)


def test_valid_spec_exits_zero_quietly() -> None:
    result = meshc("validate", str(SHOP))
    assert result.returncode == 0, result.stderr
    assert result.stderr == "" and result.stdout == ""


def test_invalid_spec_exits_one_with_positioned_error() -> None:
    result = meshc("validate", str(BAD))
    assert result.returncode == 1
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"{BAD}:11:16: error: ") and first.endswith("[E201]")
    assert "Traceback" not in result.stderr


def test_warnings_pass_unless_strict() -> None:
    assert meshc("validate", str(WARN)).returncode == 0
    strict = meshc("validate", "--strict", str(WARN))
    assert strict.returncode == 1 and "[W201]" in strict.stderr


def test_json_format_lists_every_field() -> None:
    result = meshc("validate", "--format", "json", str(BAD))
    assert result.returncode == 1 and result.stderr == ""    # JSON goes to stdout, where `| jq` reads it
    [item] = json.loads(result.stdout)
    assert {k: item[k] for k in ("code", "severity", "line", "col", "file")} == {
        "code": "E201", "severity": "error", "line": 11, "col": 16, "file": str(BAD)}
    assert item["path"] == "spec.services.0.upstreams.0.service"


def test_github_format_annotates() -> None:
    result = meshc("validate", "--format", "github", str(BAD))
    assert result.stderr.startswith(f"::error file={BAD},line=11,col=16,title=E201::")


def test_default_spec_is_mesh_yaml_in_the_working_directory() -> None:
    assert meshc("validate", cwd=SHOP.parent).returncode == 0


@pytest.mark.parametrize("args", [("validate", "does-not-exist.yaml"), ("validate", "examples"),
                                  ("validate", "--format", "xml", str(SHOP)), ("no-such-verb",), ()])
def test_usage_and_io_errors_exit_two(args: tuple[str, ...]) -> None:
    result = meshc(*args)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr


def test_missing_file_message() -> None:
    result = meshc("validate", "nope/mesh.yaml")
    assert "nope/mesh.yaml: no such file [E001]" in result.stderr


def test_schema_matches_checked_in_file() -> None:
    result = meshc("schema")
    assert result.returncode == 0
    assert result.stdout == (ROOT / "schemas" / "mesh.v1alpha1.json").read_text(), \
        "the schema drifted: run `meshc schema > schemas/mesh.v1alpha1.json`"


def test_examples_validate_against_the_json_schema() -> None:
    import jsonschema
    import yaml

    schema = json.loads((ROOT / "schemas" / "mesh.v1alpha1.json").read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for example in sorted((ROOT / "examples").glob("*/mesh.yaml")):
        errors = list(validator.iter_errors(yaml.safe_load(example.read_text())))
        assert errors == [], (example, errors[:1])


# --- review workflow -----------------------------------------------------------------------------

MIXED = """\
apiVersion: meshc.dev/v1alpha1
kind: Mesh
metadata: {name: demo}
spec:
  services:
  - name: web
    image: ghcr.io/acme/web:1.0.0
    port: 0
    protocol: TCP
    upstreams:
    - {service: strpe, localPort: 9001}
  - name: stripe
    port: 443
    endpoints: [{address: api.stripe.com, port: 443}]
"""


def test_structural_and_reference_errors_come_in_one_run_with_spelling_hints(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(MIXED)
    result = meshc("validate", str(spec))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any("[E104]" in line and ":8:11:" in line for line in lines)
    assert any("[E106]" in line and "did you mean 'tcp'?" in line for line in lines)
    assert any("[E201]" in line and "did you mean 'stripe'?" in line and ":11:17:" in line for line in lines)


def test_validate_reads_the_spec_from_stdin() -> None:
    ok = subprocess.run([sys.executable, "-m", "meshc.cli", "validate", "-"], input=SHOP.read_text(),
                        capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert ok.returncode == 0 and ok.stderr == ""
    bad = subprocess.run([sys.executable, "-m", "meshc.cli", "validate", "-"], input=BAD.read_text(),
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 1 and bad.stderr.startswith("<stdin>:11:16: error: ")


def test_strict_says_warnings_were_treated_as_errors() -> None:
    result = meshc("validate", "--strict", str(WARN))
    assert result.returncode == 1
    assert result.stderr.splitlines()[-1] == "0 errors, 1 warning; --strict treats the warning as an error"


def test_ignore_flag_silences_one_warning_code_and_refuses_errors() -> None:
    quiet = meshc("validate", "--strict", "--ignore", "W201", str(WARN))
    assert quiet.returncode == 0 and quiet.stderr == ""
    refused = meshc("validate", "--ignore", "E201", str(BAD))
    assert refused.returncode == 2 and "errors cannot be ignored" in refused.stderr


def test_spec_ignore_is_scoped_to_a_service_and_stale_entries_warn(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    accepted = WARN.read_text().replace("  services:\n", "  analysis:\n    ignore:\n    - {code: W201, service: web}\n"
                                        "  services:\n", 1)
    spec.write_text(accepted)
    assert meshc("validate", "--strict", str(spec)).returncode == 0
    spec.write_text(accepted.replace("service: web}", "service: api}"))
    result = meshc("validate", str(spec))
    assert "[W201]" in result.stderr and "[W210]" in result.stderr     # about web, not api; the entry is stale


def test_json_goes_to_stdout_for_build_and_usage_errors(tmp_path: Path) -> None:
    build = meshc("build", str(WARN), "-o", str(tmp_path / "out"), "--format", "json")
    assert build.returncode == 0 and [d["code"] for d in json.loads(build.stdout)] == ["W201"]
    missing = meshc("validate", str(tmp_path / "nope.yaml"), "--format", "json")
    assert missing.returncode == 2 and json.loads(missing.stdout)[0]["code"] == "E001"


def test_a_flood_of_one_code_is_listed_up_to_a_cap_and_counted(tmp_path: Path) -> None:
    spec = tmp_path / "mesh.yaml"
    spec.write_text(SHOP.read_text().replace("    port: 8080\n", "    port: 8080\n" + "".join(
        f"    unknown{i}: 1\n" for i in range(250)), 1))
    result = meshc("validate", str(spec))
    lines = result.stderr.splitlines()
    assert sum("[E101]" in line for line in lines) == 101
    assert lines[-2].endswith("error: ... and 150 more E101 [E101]") and lines[-1] == "250 errors, 0 warnings"
    listed = json.loads(meshc("validate", str(spec), "--format", "json").stdout)
    assert len(listed) == 101 and listed[-1]["count"] == 150


def test_an_empty_envoy_config_dir_is_a_usage_error(tmp_path: Path) -> None:
    result = meshc("build", str(SHOP), "-o", str(tmp_path / "out"), "--envoy-config-dir", "")
    assert result.returncode == 2 and "meshc: error: argument --envoy-config-dir: must name a directory" in result.stderr
    assert not (tmp_path / "out").exists()


def test_usage_errors_share_one_prefix() -> None:
    watch = meshc("watch", "--repo", ".", "--keyring", "k.gpg", "--output", "/tmp/x")
    build = meshc("build", str(SHOP))
    for result in (watch, build):
        assert result.returncode == 2
        assert result.stderr.splitlines()[-1].startswith("meshc: error: "), result.stderr


def _run_on_a_terminal(*args: str) -> str:
    """stderr of meshc when stderr is a terminal (a pseudo-terminal)."""
    import os
    import pty

    main, child = pty.openpty()
    env = {**os.environ, "MESHC_PROGRESS_DELAY": "0"}
    process = subprocess.Popen([sys.executable, "-m", "meshc.cli", *args], stdout=subprocess.DEVNULL,
                               stderr=child, cwd=ROOT, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 4096)
        except OSError:      # the child closed its end
            break
        if not chunk:
            break
        chunks.append(chunk)
    process.wait(timeout=120)
    os.close(main)
    return b"".join(chunks).decode(errors="replace")


def test_progress_is_shown_on_a_terminal_and_never_in_a_pipe(tmp_path: Path) -> None:
    from bench import gen_mesh

    spec = tmp_path / "mesh.yaml"
    spec.write_text(gen_mesh.generate(150, 1))
    on_terminal = _run_on_a_terminal("build", str(spec), "-o", str(tmp_path / "a"))
    assert "\rmeshc: build: " in on_terminal and "wrote" in on_terminal
    piped = meshc("build", str(spec), "-o", str(tmp_path / "b"))
    assert piped.returncode == 0 and "\r" not in piped.stderr and "build:" not in piped.stderr


# `meshc` ends its process with meshc.cli.end_process: what a normal exit shows must still happen.
_END = """
import atexit, sys, tempfile, threading, time
from meshc.cli import end_process
kept = tempfile.TemporaryDirectory(prefix="meshc-end-")   # removed by its weakref.finalize at exit
print(kept.name)
atexit.register(lambda: sys.stderr.write("atexit ran\\n"))
sys.stdout.write("unflushed to the last")
if sys.argv[1] == "thread":
    threading.Thread(target=lambda: (time.sleep(0.3), sys.stderr.write("thread finished\\n"))).start()
end_process(int(sys.argv[2]))
"""


@pytest.mark.parametrize("code", [0, 1, 2, 130])
def test_the_command_ends_with_its_status_its_output_flushed_and_its_exit_handlers_run(code: int) -> None:
    result = subprocess.run([sys.executable, "-c", _END, "plain", str(code)], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == code
    temporary, last = result.stdout.splitlines()
    assert last == "unflushed to the last"
    assert result.stderr == "atexit ran\n"
    assert not Path(temporary).exists()


def test_the_command_waits_for_a_running_thread_as_a_normal_exit_would() -> None:
    result = subprocess.run([sys.executable, "-c", _END, "thread", "3"], capture_output=True, text=True,
                            cwd=ROOT, timeout=60)
    assert result.returncode == 3
    assert result.stderr == "thread finished\natexit ran\n"
    assert result.stdout.endswith("unflushed to the last")
