"""`make install` / `make uninstall` (SPEC §7): the programs, the three man
pages and the systemd unit land under $(DESTDIR)$(PREFIX); every page renders
with man(1) and groff finds nothing to warn about; the unit is Type=notify,
reloads by SIGHUP, runs the binary just installed and passes
`systemd-analyze verify`. Everything is installed into temporary
directories, never onto the machine."""
import os
import shutil
import subprocess

import pytest

from harness import REPO

MANS = ["share/man/man8/limpet.8", "share/man/man8/limpetctl.8", "share/man/man5/limpet.json.5"]
PROGRAMS = ["sbin/limpet", "bin/limpetctl"]
UNIT = "lib/systemd/system/limpet.service"
TOOLS = "apt-get install -y make man-db groff-base systemd"


def make(*args):
    p = subprocess.run(["make", "-s", "-C", str(REPO), *args], capture_output=True,
                       text=True, timeout=240)
    assert p.returncode == 0, f"make {' '.join(args)}: exit {p.returncode}\n{p.stdout}\n{p.stderr}"
    return p


def require(*tools):
    missing = [t for t in tools if not shutil.which(t)]
    if missing:
        pytest.fail(f"this test needs {', '.join(missing)}; run: {TOOLS}", pytrace=False)


def unit_settings(path):
    """{(section, key): [values]} of a unit file."""
    out, section = {}, None
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.setdefault((section, key.strip()), []).append(value.strip())
    return out


@pytest.mark.timeout(300)
def test_make_install_destdir_and_uninstall(tmp_path):
    require("man", "groff")
    dest = tmp_path / "dest"
    make("install", f"DESTDIR={dest}")
    root = dest / "usr" / "local"

    for prog in PROGRAMS:
        f = root / prog
        assert f.is_file() and os.access(f, os.X_OK), f"{f} missing or not executable"
    v = subprocess.run([str(root / "sbin/limpet"), "--version"], capture_output=True, text=True,
                       timeout=10)
    assert v.returncode == 0 and v.stdout.startswith("limpet ")
    v = subprocess.run([str(root / "bin/limpetctl"), "--version"], capture_output=True,
                       text=True, timeout=10)
    assert v.returncode == 0 and v.stdout.startswith("limpetctl ")

    for page in MANS:
        f = root / page
        assert f.is_file(), f"{f} missing"
        r = subprocess.run(["man", "-l", str(f)], capture_output=True, text=True, timeout=30,
                           env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                                "PAGER": "cat"})
        assert r.returncode == 0, f"man -l {page}: exit {r.returncode}\n{r.stderr}"
        assert r.stderr == "", f"man -l {page} warns:\n{r.stderr}"
        assert "NAME" in r.stdout and "SEE ALSO" in r.stdout and len(r.stdout) > 2000, r.stdout
        g = subprocess.run(["groff", "-ww", "-man", "-z", str(f)], capture_output=True,
                           text=True, timeout=30)
        assert g.returncode == 0 and g.stderr == "", f"groff -ww {page}:\n{g.stderr}"

    unit = root / UNIT
    assert unit.is_file(), f"{unit} missing"
    s = unit_settings(unit)
    assert s[("Service", "Type")] == ["notify"]
    # an upgraded process (SIGUSR2) announces itself with MAINPID= before it is the main one
    assert s[("Service", "NotifyAccess")] == ["all"]
    # the installed path, not the template's @SBINDIR@
    assert s[("Service", "ExecStart")] == ["/usr/local/sbin/limpet -c /etc/limpet/limpet.json"]
    assert s[("Service", "ExecReload")] == ["/bin/kill -HUP $MAINPID"]
    assert s[("Service", "KillSignal")] == ["SIGTERM"]
    assert s[("Service", "Restart")] == ["on-failure"]
    assert s[("Service", "LimitNOFILE")] == ["1048576"]
    assert s[("Service", "NoNewPrivileges")] == ["yes"]
    assert s[("Service", "ProtectSystem")] == ["full"]
    assert s[("Install", "WantedBy")] == ["multi-user.target"]
    assert "@" not in unit.read_text().replace("@system-service", ""), \
        "a template variable was left in the unit"

    installed = sorted(str(p.relative_to(dest)) for p in dest.rglob("*") if p.is_file())
    assert installed == sorted(f"usr/local/{p}" for p in PROGRAMS + MANS + [UNIT])

    make("uninstall", f"DESTDIR={dest}")
    left = [str(p) for p in dest.rglob("*") if p.is_file()]
    assert left == [], left


@pytest.mark.timeout(300)
def test_install_prefix_usr_and_unit_verifies(tmp_path):
    """PREFIX moves everything, ExecStart included; systemd-analyze accepts the
    unit as installed (run on a PREFIX that really holds the binary)."""
    require("systemd-analyze")
    dest = tmp_path / "dest"
    make("install", f"DESTDIR={dest}", "PREFIX=/usr")
    s = unit_settings(dest / "usr" / UNIT)
    assert s[("Service", "ExecStart")] == ["/usr/sbin/limpet -c /etc/limpet/limpet.json"]
    assert (dest / "usr/sbin/limpet").is_file() and (dest / "usr/bin/limpetctl").is_file()

    prefix = tmp_path / "prefix"
    make("install", f"PREFIX={prefix}")
    unit = prefix / UNIT
    r = subprocess.run(["systemd-analyze", "verify", str(unit)], capture_output=True, text=True,
                       timeout=60, cwd=tmp_path,
                       env={**os.environ, "MANPATH": str(prefix / "share/man")})
    # unknown or malformed settings are only warnings: any output is a failure
    assert r.returncode == 0 and r.stdout == "" and r.stderr == "", \
        f"systemd-analyze verify: exit {r.returncode}\n{r.stdout}{r.stderr}"
