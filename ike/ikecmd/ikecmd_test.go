package ikecmd

import (
	"bufio"
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// lineWriter hands each JSON line to a channel.
type lineWriter struct {
	ch  chan map[string]any
	buf bytes.Buffer
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf.Write(p)
	for {
		line, err := w.buf.ReadBytes('\n')
		if err != nil {
			w.buf.Write(line)
			return len(p), nil
		}
		var m map[string]any
		if json.Unmarshal(line, &m) == nil {
			w.ch <- m
		}
	}
}

func next(t *testing.T, ch chan map[string]any, event string) map[string]any {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case m := <-ch:
			if m["event"] == event {
				return m
			}
			if m["event"] == "error" {
				t.Fatalf("error event: %v", m)
			}
		case <-timeout:
			t.Fatalf("no %q event", event)
		}
	}
}

// TestInitiateRespond runs "espy ike respond" and "espy ike initiate -once"
// against each other on loopback with ESP-NULL, with a PSK and with
// certificates.
func TestInitiateRespond(t *testing.T) {
	t.Run("psk", func(t *testing.T) {
		t.Setenv("ESPY_IKE_PSK", "espy-cli-test-psk-not-a-secret")
		initiateRespond(t, nil, nil)
	})
	t.Run("certificates", func(t *testing.T) {
		t.Setenv("ESPY_IKE_PSK", "")
		dir := t.TempDir()
		ca, caKey := makeCert(t, dir, "ca", nil, nil)
		makeCert(t, dir, "a.lab.example", ca, caKey)
		makeCert(t, dir, "b.lab.example", ca, caKey)
		files := func(name string) []string {
			return []string{"-cert", filepath.Join(dir, name+".crt"), "-key", filepath.Join(dir, name+".key"), "-ca", filepath.Join(dir, "ca.crt")}
		}
		initiateRespond(t, files("b.lab.example"), files("a.lab.example"))
	})
}

// makeCert writes name.crt and name.key (ECDSA P-256, PKCS#8) into dir,
// self-signed as a CA when ca is nil.
func makeCert(t *testing.T, dir, name string, ca *x509.Certificate, caKey crypto.Signer) (*x509.Certificate, crypto.Signer) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	if ca == nil {
		tmpl.IsCA, tmpl.BasicConstraintsValid, tmpl.KeyUsage = true, true, x509.KeyUsageCertSign
		ca, caKey = tmpl, key
	} else {
		tmpl.DNSNames, tmpl.KeyUsage = []string{name}, x509.KeyUsageDigitalSignature
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	p8, _ := x509.MarshalPKCS8PrivateKey(key)
	os.WriteFile(filepath.Join(dir, name+".crt"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(filepath.Join(dir, name+".key"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: p8}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	return cert, key
}

func initiateRespond(t *testing.T, respExtra, iniExtra []string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rw := &lineWriter{ch: make(chan map[string]any, 64)}
	rdone := make(chan int)
	go func() {
		rdone <- run(ctx, append([]string{"respond", "-listen", "127.0.0.1", "-port", "0", "-nat-port", "0",
			"-local-id", "b.lab.example", "-remote-id", "a.lab.example", "-esp", "null-sha256",
			"-local-ts", "203.0.113.0/24", "-remote-ts", "198.51.100.0/24"}, respExtra...), rw, io.Discard)
	}()
	l := next(t, rw.ch, "listening")
	ikeAddr, nattAddr := l["ike"].(string), l["natt"].(string)
	port := ikeAddr[strings.LastIndex(ikeAddr, ":")+1:]
	nport := nattAddr[strings.LastIndex(nattAddr, ":")+1:]

	var iout bytes.Buffer
	args := append([]string{"initiate", "-listen", "127.0.0.1", "-port", "0", "-nat-port", "0", "-remote-port", port,
		"-remote-nat-port", nport, "-local-id", "a.lab.example", "-remote-id", "b.lab.example", "-esp", "null-sha256",
		"-local-ts", "198.51.100.0/24", "-remote-ts", "203.0.113.0/24", "-once"}, iniExtra...)
	code := run(ctx, append(args, "127.0.0.1"), &iout, io.Discard)
	if code != 0 {
		t.Fatalf("initiate exit %d:\n%s", code, iout.String())
	}
	var events []string
	var registered []map[string]any
	sc := bufio.NewScanner(&iout)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not JSON: %q", sc.Text())
		}
		events = append(events, m["event"].(string))
		if m["event"] == "sa_registered" {
			registered = append(registered, m)
		}
	}
	want := "listening sa_registered sa_registered established sa_unregistered sa_unregistered"
	if strings.Join(events, " ") != want {
		t.Fatalf("events %v, want %s", events, want)
	}
	for _, m := range registered {
		if m["null"] != true || m["icv_len"] != 16.0 || m["integ"] != "hmac-sha2-256-128" || m["encr"] != "null" {
			t.Fatalf("registered %v", m)
		}
	}
	// The responder saw the IKE SA, the same Child SA, and its deletion.
	seen := map[string]map[string]any{}
	timeout := time.After(10 * time.Second)
	for seen["established"] == nil || seen["sa_registered"] == nil || seen["sa_unregistered"] == nil {
		select {
		case m := <-rw.ch:
			seen[m["event"].(string)] = m
		case <-timeout:
			t.Fatalf("responder events: %v", seen)
		}
	}
	if r := seen["sa_registered"]; r["null"] != true {
		t.Fatalf("responder registered %v", r)
	}
	if e := seen["established"]; e["peer_id"] != "a.lab.example" || e["dh_group"] != 31.0 {
		t.Fatalf("responder established %v", e)
	}
	cancel()
	if code := <-rdone; code != 0 {
		t.Fatalf("respond exit %d", code)
	}
}

func TestUsage(t *testing.T) {
	var stderr bytes.Buffer
	if code := run(context.Background(), nil, io.Discard, &stderr); code != 2 || !strings.Contains(stderr.String(), "usage: espy ike") {
		t.Fatalf("exit %d, %q", code, stderr.String())
	}
	t.Setenv("ESPY_IKE_PSK", "")
	var out bytes.Buffer
	if code := run(context.Background(), []string{"respond", "-local-id", "x", "-port", "0", "-nat-port", "0"}, &out, io.Discard); code != 1 || !strings.Contains(out.String(), "pre-shared key") {
		t.Fatalf("exit %d, %q", code, out.String())
	}
	t.Setenv("ESPY_IKE_PSK", "k")
	out.Reset()
	if code := run(context.Background(), []string{"initiate", "-local-id", "x", "-port", "0", "-nat-port", "0", "-ike", "aes128-sha256-modp1024", "127.0.0.1"}, &out, io.Discard); code != 1 || !strings.Contains(out.String(), "forbidden by policy") {
		t.Fatalf("weak proposal: exit %d, %q", code, out.String())
	}
}
