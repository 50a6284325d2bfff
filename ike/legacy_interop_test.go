package ike

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/message"
	"github.com/espy-dpi/espy/internal/charonlab"
)

// legacyConn is a charon connection to espy (both directions) with
// certificates of one key kind.
const legacyConn = `  leg-%[1]s {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    send_cert = always
    local {
      auth = pubkey
      certs = b-%[1]s.pem
      id = b-%[1]s.lab.example
    }
    remote {
      auth = pubkey
      id = a-%[1]s.lab.example
      cacerts = ca.pem
    }
    children {
      leg-%[1]s-net {
        local_ts = 203.0.113.1/32
        remote_ts = 198.51.100.1/32
        esp_proposals = null-sha256
      }
    }
  }
`

// TestInteropStrongSwanLegacyAuth runs charon without RFC 7427
// (signature_authentication = no: it sends no SIGNATURE_HASH_ALGORITHMS
// and signs with the legacy methods) against espy with the default
// SignatureAuthAuto, with ECDSA P-256 certificates (AUTH method 9) and RSA
// ones (method 1, with AllowSHA1Auth), espy initiating and then charon:
// the IKE SA must come up (swanctl --list-sas), charon must log the legacy
// method for espy's AUTH and espy must report it for both ends.
func TestInteropStrongSwanLegacyAuth(t *testing.T) {
	l := labWith(t, charonlab.Options{Name: "lgc", Dev: "elg"}, "203.0.113.1/32")
	pki := newTestPKI(t)
	writePEM(t, filepath.Join(l.Dir, "x509ca", "ca.pem"), "CERTIFICATE", pki.ca.Raw)
	kinds := []struct {
		kind, charonName string
		method           message.AuthMethod
	}{{"ecdsa", "ECDSA-256 signature", message.AuthECDSA256}, {"rsa", "RSA signature", message.AuthRSASig}}
	var conns strings.Builder
	espyCerts := map[string]leafKey{}
	for _, k := range kinds {
		bCert, bKey := pki.leaf(t, "b-"+k.kind+".lab.example", k.kind)
		writePEM(t, filepath.Join(l.Dir, "x509", "b-"+k.kind+".pem"), "CERTIFICATE", bCert.Raw)
		p8, err := x509.MarshalPKCS8PrivateKey(bKey)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, filepath.Join(l.Dir, "private", "b-"+k.kind+".pem"), "PRIVATE KEY", p8)
		fmt.Fprintf(&conns, legacyConn, k.kind)
		c, key := pki.leaf(t, "a-"+k.kind+".lab.example", k.kind)
		espyCerts[k.kind] = leafKey{cert: c, key: key}
	}
	l.StartCharon(t, charonlab.Charon{
		Swanctl:  "connections {\n" + conns.String() + "}\n",
		Settings: "# no RFC 7427: no SIGNATURE_HASH_ALGORITHMS, legacy AUTH methods\nsignature_authentication = no",
	})
	e := l.listenIn(t)
	for _, k := range kinds {
		t.Run(k.kind, func(t *testing.T) {
			cfg := interopConfig("aes128gcm16-prfsha256-x25519", "null-sha256", &recorder{})
			cfg.LocalID, cfg.RemoteID, cfg.PSK = FQDN("a-"+k.kind+".lab.example"), FQDN("b-"+k.kind+".lab.example"), nil
			lk := espyCerts[k.kind]
			cfg.Certificates, cfg.PrivateKey, cfg.RootCAs = []*x509.Certificate{lk.cert}, lk.key, []*x509.Certificate{pki.ca}
			cfg.AllowSHA1Auth = k.kind == "rsa"
			check := func(sa *IKESA, who string) {
				t.Helper()
				if l, r := sa.AuthMethods(); l != k.method || r != k.method {
					t.Fatalf("%s: espy signed with AUTH method %d, charon with %d; want %d", who, l, r, k.method)
				}
				spiI, spiR := sa.SPIs()
				out := l.ListSAs(t)
				if !strings.Contains(out, fmt.Sprintf("%016x_i", spiI)) || !strings.Contains(out, fmt.Sprintf("%016x_r", spiR)) || !strings.Contains(out, "ESTABLISHED") {
					t.Fatalf("%s: swanctl --list-sas lacks the IKE SA:\n%s", who, out)
				}
				want := fmt.Sprintf("authentication of 'a-%s.lab.example' with %s successful", k.kind, k.charonName)
				if !strings.Contains(l.Log(), want) {
					t.Fatalf("%s: charon's log lacks %q", who, want)
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			sa, err := e.Initiate(ctx, cfg, netip.AddrPortFrom(charonAddr, DefaultPort))
			if err != nil {
				t.Fatal(err)
			}
			check(sa, "espy initiating")
			if err := sa.Delete(ctx); err != nil {
				t.Fatal(err)
			}
			if err := e.Respond(cfg); err != nil {
				t.Fatal(err)
			}
			check(l.charonInitiates(t, e, "leg-"+k.kind+"-net"), "charon initiating")
			l.Swanctl(t, "--terminate", "--ike", "leg-"+k.kind, "--timeout", "10")
			waitFor(t, func() bool { return len(e.IKESAs()) == 0 })
		})
	}
}
