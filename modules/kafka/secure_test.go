package kafka

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/twmb/franz-go/pkg/kfake"

	"github.com/lua-resty-ffi-go/lua-resty-ffi-go/core"
)

// These tests run their own in-process kfake (random port): SASL users and
// TLS are per cluster.

func cluster(t *testing.T, opts ...kfake.Opt) string {
	t.Helper()
	c, err := kfake.NewCluster(append([]kfake.Opt{kfake.NumBrokers(1), kfake.SeedTopics(1, "secure")}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c.ListenAddrs()[0]
}

func trySend(t *testing.T, o core.Options) error {
	t.Helper()
	p, err := NewProducer(o)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err = p.Call(ctx, "send", []any{"secure", nil, "hello"})
	return err
}

func TestSASL(t *testing.T) {
	addr := cluster(t, kfake.EnableSASL(),
		kfake.Superuser("PLAIN", "plain", "p-secret"),
		kfake.Superuser("SCRAM-SHA-256", "scram256", "s256-secret"),
		kfake.Superuser("SCRAM-SHA-512", "scram512", "s512-secret"))
	for _, c := range []struct{ mech, user, pass string }{
		{"PLAIN", "plain", "p-secret"}, {"SCRAM-SHA-256", "scram256", "s256-secret"},
		{"SCRAM-SHA-512", "scram512", "s512-secret"},
	} {
		sasl := map[string]any{"mechanism": c.mech, "user": c.user, "password": c.pass}
		if err := trySend(t, core.Options{"brokers": []any{addr}, "sasl": sasl}); err != nil {
			t.Errorf("%s: %v", c.mech, err)
		}
		sasl["password"] = "wrong"
		err := trySend(t, core.Options{"brokers": []any{addr}, "sasl": sasl, "max_attempts": int64(1)})
		if err == nil {
			t.Errorf("%s with a wrong password succeeded", c.mech)
		} else if strings.Contains(err.Error(), "wrong") {
			t.Errorf("%s: the error shows the password: %v", c.mech, err)
		}
	}
}

func TestTLSVerifiesByDefault(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "kfake test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dir, "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	addr := cluster(t, kfake.TLS(&tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}))
	// verification on (system roots): a self-signed broker is refused
	if err := trySend(t, core.Options{"brokers": []any{addr}, "tls": true, "max_attempts": int64(1)}); err == nil ||
		!strings.Contains(err.Error(), "certificate") {
		t.Errorf("tls=true against a self-signed broker: %v", err)
	}
	if err := trySend(t, core.Options{"brokers": []any{addr}, "tls": map[string]any{"ca_file": ca}}); err != nil {
		t.Errorf("tls with its CA: %v", err)
	}
	if err := trySend(t, core.Options{"brokers": []any{addr}, "tls": map[string]any{"verify": false}}); err != nil {
		t.Errorf("tls verify=false: %v", err)
	}
}
