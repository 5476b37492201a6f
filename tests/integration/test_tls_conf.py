"""TLS configuration through the real binary: `weir -t` reads every
certificate and key, refuses a mismatched, missing or encrypted one with
FILE:LINE, and warns (exit 0) about a certificate that expires within 14
days. Certificates come from tests/unit/tls-certs.sh (the openssl command)."""

import os
import re
import subprocess

import pytest

from weirtest import WEIR_BIN, free_port, tf

HERE = os.path.dirname(os.path.abspath(__file__))
CERTS_SH = os.path.join(HERE, "..", "unit", "tls-certs.sh")


@pytest.fixture(scope="module")
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp("certs")
    subprocess.run(["sh", CERTS_SH, str(d)], check=True, timeout=tf(120))
    return d


def run_t(path):
    p = subprocess.run([WEIR_BIN, "-t", "-c", str(path)], capture_output=True, timeout=tf(20),
                       stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode(), p.stderr.decode()


def write(d, name, tls_certs, extra_listen="", pool_tls=""):
    port = free_port()
    text = ('listen = ( { address = "127.0.0.1:%d";\n' % port +
            '  tls = { certificates = (\n' +
            ",\n".join('    { cert = "%s"; key = "%s"; }' % c for c in tls_certs) + " );\n"
            '  }; %s } );\n' % extra_listen +
            'pools = ( { name = "api"; servers = ( { address = "127.0.0.1:9001"; } ); %s } );\n' % pool_tls +
            'routes = ( { pool = "api"; } );\n')
    f = d / name
    f.write_text(text)
    return f


def test_valid_rsa_and_ecdsa(certs):
    f = write(certs, "ok.conf", [("a-rsa.pem", "a-rsa.key"), ("a-ec.pem", "a-ec.key")],
              pool_tls='tls = { ca_file = "ca.pem"; cert = "client.pem"; key = "client.key"; };')
    rc, out, err = run_t(f)
    assert rc == 0, err
    assert "is valid" in out
    assert "warning" not in err


def test_expiry_warning_is_not_an_error(certs):
    f = write(certs, "soon.conf", [("a-rsa.pem", "a-rsa.key"), ("soon.pem", "soon.key"),
                                   ("expired.pem", "expired.key")])
    rc, out, err = run_t(f)
    assert rc == 0, err
    assert "is valid" in out
    lines = err.strip().splitlines()
    assert len(lines) == 2, err
    assert re.fullmatch(r"%s:4: warning: listen\[0\]\.tls\.certificates\[1\]\.cert: the certificate '%s' "
                        r"expires in 3 day\(s\), on \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
                        % (re.escape(str(f)), re.escape(str(certs / "soon.pem"))), lines[0]), lines[0]
    assert lines[1] == ("%s:5: warning: listen[0].tls.certificates[2].cert: the certificate '%s' expired on "
                        "2020-02-01 00:00:00 UTC" % (f, certs / "expired.pem")), lines[1]


@pytest.mark.parametrize("pair,line,msg", [
    (("c.pem", "a-rsa.key"), 3,
     "listen[0].tls.certificates[0].key: the key '{d}/a-rsa.key' does not match the certificate '{d}/c.pem'"),
    (("missing.pem", "a-rsa.key"), 3,
     "listen[0].tls.certificates[0].cert: cannot read '{d}/missing.pem': No such file or directory"),
    (("a-ec.pem", "enc.key"), 3,
     "listen[0].tls.certificates[0].key: '{d}/enc.key' contains no PEM private key (encrypted keys are "
     "not supported)"),
])
def test_bad_pair_refused(certs, pair, line, msg):
    f = write(certs, "bad.conf", [pair])
    rc, out, err = run_t(f)
    assert rc == 1
    assert "%s:%d: %s" % (f, line, msg.format(d=certs)) in err.splitlines(), err


def test_unreadable_key_refused(certs):
    if os.geteuid() == 0:
        pytest.skip("root reads any file")
    key = certs / "unreadable.key"
    key.write_bytes((certs / "a-rsa.key").read_bytes())
    key.chmod(0)
    f = write(certs, "unreadable.conf", [("a-rsa.pem", "unreadable.key")])
    rc, out, err = run_t(f)
    assert rc == 1
    assert "cannot read '%s': Permission denied" % key in err, err


def test_redirect_on_tls_listener_refused(certs):
    f = write(certs, "redir.conf", [("a-rsa.pem", "a-rsa.key")], extra_listen="redirect_https = true;")
    rc, out, err = run_t(f)
    assert rc == 1
    assert "%s:4: redirect_https is for a plain listener: this one has a tls group (line 2)" % f in err, err


def test_key_below_security_level_refused(certs):
    """A 1024-bit RSA key loads and matches its certificate, but OpenSSL
    refuses it at Debian's security level: -t builds the contexts to say so."""
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:1024", "-nodes", "-keyout",
                    str(certs / "weak.key"), "-out", str(certs / "weak.pem"), "-subj", "/CN=weak.test",
                    "-days", "30"], check=True, capture_output=True, timeout=tf(60))
    f = write(certs, "weak.conf", [("a-rsa.pem", "a-rsa.key"), ("weak.pem", "weak.key")])
    rc, out, err = run_t(f)
    assert rc == 1
    assert ("%s:4: tls certificate 1: OpenSSL refuses '%s': error:0A00018F:SSL routines::ee key too small"
            % (f, certs / "weak.pem")) in err.splitlines(), err
