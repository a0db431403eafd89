package postgres

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// tlsAttempts lists the TLS configurations a pool would try, in order
// (nil: a plain attempt).
func tlsAttempts(t *testing.T, opts core.Options) []*tls.Config {
	t.Helper()
	s, err := parseSettings(opts)
	if err != nil {
		t.Fatal(err)
	}
	cc := s.pool.ConnConfig
	out := []*tls.Config{cc.TLSConfig}
	for _, fb := range cc.Fallbacks {
		out = append(out, fb.TLSConfig)
	}
	return out
}

// verified: the attempt checks the chain and, unless verify-ca, the name.
func verified(c *tls.Config) bool {
	return c != nil && (!c.InsecureSkipVerify || c.VerifyPeerCertificate != nil)
}

// writeCA writes a self-signed CA certificate: pgx only loads sslrootcert
// here, no server is involved.
func writeCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "options test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestTLSIsAlwaysVerified(t *testing.T) {
	ca := writeCA(t)
	// libpq's environment would change the defaults under test
	for _, v := range []string{"PGSSLMODE", "PGSSLROOTCERT", "PGSSLCERT", "PGSSLKEY", "PGSSLNEGOTIATION", "PGHOST"} {
		t.Setenv(v, "")
	}
	base := func(extra core.Options) core.Options {
		o := core.Options{"host": "127.0.0.1", "user": "u", "password": "p", "database": "d"}
		for k, v := range extra {
			o[k] = v
		}
		return o
	}
	cases := []struct {
		name      string
		opts      core.Options
		plain     int  // plain attempts expected
		encrypted int  // TLS attempts expected
		verify    bool // every TLS attempt verified
	}{
		{"default (prefer)", base(nil), 1, 1, true},
		{"prefer", base(core.Options{"sslmode": "prefer"}), 1, 1, true},
		{"allow", base(core.Options{"sslmode": "allow"}), 1, 1, true},
		{"require", base(core.Options{"sslmode": "require"}), 0, 1, true},
		{"require in a URL", core.Options{"dsn": "postgres://u:p@127.0.0.1/d?sslmode=require"}, 0, 1, true},
		{"require in keywords", core.Options{"dsn": "host=127.0.0.1 user=u password=p sslmode=require"}, 0, 1, true},
		{"require with a CA (verify-ca)", base(core.Options{"sslmode": "require", "sslrootcert": ca}), 0, 1, true},
		{"verify-full", base(core.Options{"sslmode": "verify-full"}), 0, 1, true},
		{"disable", base(core.Options{"sslmode": "disable"}), 1, 0, true},
		{"require, ssl_verify = false", base(core.Options{"sslmode": "require", "ssl_verify": false}), 0, 1, false},
		{"prefer, ssl_verify = false", base(core.Options{"ssl_verify": false}), 1, 1, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var plain, encrypted, unverified int
			for _, a := range tlsAttempts(t, c.opts) {
				switch {
				case a == nil:
					plain++
				case verified(a):
					encrypted++
				default:
					encrypted++
					unverified++
				}
				if a != nil && !a.InsecureSkipVerify && a.ServerName != "127.0.0.1" {
					t.Errorf("server name %q, want the host", a.ServerName)
				}
			}
			if plain != c.plain || encrypted != c.encrypted {
				t.Errorf("%d plain and %d TLS attempts, want %d and %d", plain, encrypted, c.plain, c.encrypted)
			}
			if c.verify && unverified > 0 {
				t.Errorf("%d TLS attempts do not verify the server", unverified)
			}
			if !c.verify && encrypted > 0 && unverified != encrypted {
				t.Errorf("ssl_verify = false: %d of %d TLS attempts still verify", encrypted-unverified, encrypted)
			}
		})
	}
}

func TestSSLVerifyIsPartOfThePoolKey(t *testing.T) {
	a, err := parseSettings(core.Options{"dsn": "postgres://u:p@h/d?sslmode=require"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseSettings(core.Options{"dsn": "postgres://u:p@h/d?sslmode=require", "ssl_verify": false})
	if err != nil {
		t.Fatal(err)
	}
	if a.poolKey == b.poolKey {
		t.Fatal("a verifying and a non-verifying configuration would share one pool")
	}
	if _, err := parseSettings(core.Options{"host": "h", "ssl_verify": "no"}); err == nil {
		t.Fatal("ssl_verify = \"no\" accepted")
	}
}

func TestParseErrorsNeverShowThePassword(t *testing.T) {
	const secret = "pg-SECRET-9x"
	for _, o := range []core.Options{
		{"dsn": "postgres://u:pw@" + secret + "@127.0.0.1:notaport/d"}, // unescaped "@"
		{"dsn": "postgres://u:pw:" + secret + "@127.0.0.1:notaport/d"},
		{"dsn": "postgres://u:" + secret + "%zz@127.0.0.1/d"},
		{"dsn": "postgres://127.0.0.1/d?password=" + secret + "&port=x"},
		{"dsn": "host=127.0.0.1 port=x password='a " + secret + "'"},
		{"dsn": "host=127.0.0.1 port=x sslpassword=" + secret},
		{"host": "127.0.0.1", "port": "x", "password": "a'" + secret},
		{"host": "127.0.0.1", "port": "x", "password": "a " + secret},
		{"dsn": "postgres://u:" + secret + "@127.0.0.1/d", "sslmode": "bogus"},
	} {
		_, err := parseSettings(o)
		if err == nil {
			t.Errorf("%v: parsed", o)
		} else if strings.Contains(err.Error(), secret) {
			t.Errorf("the error shows the password: %v", err)
		}
	}
}
