package ike

import (
	"context"
	"crypto/x509"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// fragConn is charon's side of TestInteropStrongSwanFragmentation: an
// RSA-4096 leaf issued by an intermediate, fragmentation on (RFC 7383),
// used by charon as responder and as initiator. charon's fragment_size is
// its default, 1280 bytes per IP datagram, like espy's.
const fragConn = `  frag {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519,aes256-sha256-modp2048
    fragmentation = yes
    local {
      auth = pubkey
      certs = frag-b.pem
      id = frag-b.lab.example
    }
    remote {
      auth = pubkey
      id = frag-a.lab.example
      cacerts = frag-root.pem
    }
    children {
      fragnet {
        local_ts = 203.0.113.1/32
        remote_ts = 198.51.100.1/32
        esp_proposals = null-sha256
      }
    }
  }
`

// TestInteropStrongSwanFragmentation runs IKE_AUTH with RSA-4096
// certificates and an intermediate CA (about 3 KB each way) between espy
// and charon 5.9.8, first espy initiating, then charon. Each IKE_AUTH
// message goes out in IKE fragments: espy's counters show the fragments
// it sent and the messages it reassembled, and charon's log shows it
// split and reassembled messages; neither would happen without RFC 7383.
func TestInteropStrongSwanFragmentation(t *testing.T) {
	l := newLab(t)
	pk := fragPKI(t)
	writePEM(t, filepath.Join(l.Dir, "x509ca", "frag-root.pem"), "CERTIFICATE", pk.root.Raw)
	writePEM(t, filepath.Join(l.Dir, "x509ca", "frag-inter.pem"), "CERTIFICATE", pk.inter.Raw)
	writePEM(t, filepath.Join(l.Dir, "x509", "frag-b.pem"), "CERTIFICATE", pk.b.Raw)
	p8, err := x509.MarshalPKCS8PrivateKey(pk.bKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, filepath.Join(l.Dir, "private", "frag-b.pem"), "PRIVATE KEY", p8)
	l.extraConns = fragConn
	l.startCharon(t, "aes128gcm16-prfsha256-x25519", "null-sha256", "aes128gcm16-prfsha256-x25519", "null-sha256")
	e := l.listenIn(t)

	cfg := func(ike string, reg SARegistrar) *Config {
		c := interopConfig(ike, "null-sha256", reg)
		c.LocalID, c.RemoteID, c.PSK = FQDN("frag-a.lab.example"), FQDN("frag-b.lab.example"), nil
		c.Certificates, c.PrivateKey = []*x509.Certificate{pk.a, pk.inter}, pk.aKey
		c.RootCAs = []*x509.Certificate{pk.root}
		return c
	}
	charonLog := l.Log
	// checkFragmented compares espy's counters and charon's log with
	// what they were before one IKE_AUTH exchange.
	checkFragmented := func(t *testing.T, before FragmentStats, logBefore string) {
		t.Helper()
		st := e.FragmentStats()
		if st.Sent-before.Sent < 2 || st.Reassembled-before.Reassembled != 1 || st.BadICV != 0 {
			t.Errorf("espy fragment counters %+v → %+v: want fragments sent and one message reassembled", before, st)
		}
		log := strings.TrimPrefix(charonLog(), logBefore)
		for _, line := range strings.Split(log, "\n") {
			if strings.Contains(line, "[ENC]") {
				t.Log("charon:", line)
			}
		}
		for _, want := range []string{"splitting IKE message", "reassembled fragmented IKE message"} {
			if !strings.Contains(log, want) {
				t.Errorf("charon's log lacks %q", want)
			}
		}
	}

	t.Run("espy initiates", func(t *testing.T) {
		before, logBefore := e.FragmentStats(), charonLog()
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		sa, err := e.Initiate(ctx, cfg("aes256-sha256-modp2048", &recorder{}), netip.AddrPortFrom(charonAddr, DefaultPort))
		if err != nil {
			t.Fatal(err)
		}
		if !sa.Fragmentation() {
			t.Fatal("fragmentation not negotiated with charon")
		}
		spiI, spiR := sa.SPIs()
		out := l.ListSAs(t)
		for _, want := range []string{fmt.Sprintf("%016x_i %016x_r*", spiI, spiR), "ESTABLISHED", "AES_CBC-256/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/MODP_2048",
			"remote 'frag-a.lab.example'", "INSTALLED"} {
			if !strings.Contains(out, want) {
				t.Fatalf("swanctl --list-sas lacks %q:\n%s", want, out)
			}
		}
		checkFragmented(t, before, logBefore)
		if err := sa.Delete(ctx); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("charon initiates", func(t *testing.T) {
		// Smaller fragments both ways this time: 576-byte datagrams
		// (charon's IKE SA reads charon.fragment_size when it is
		// created), six or more per IKE_AUTH message.
		sconf := l.StrongswanConf()
		b, err := os.ReadFile(sconf)
		if err != nil {
			t.Fatal(err)
		}
		b = []byte(strings.Replace(string(b), "charon {\n", "charon {\n  fragment_size = 576\n", 1))
		if err := os.WriteFile(sconf, b, 0o644); err != nil {
			t.Fatal(err)
		}
		l.Swanctl(t, "--reload-settings")
		reg := &recorder{}
		rc := cfg("aes128gcm16-prfsha256-x25519", reg)
		rc.FragmentSize = MinFragmentSize
		if err := e.Respond(rc); err != nil {
			t.Fatal(err)
		}
		before, logBefore := e.FragmentStats(), charonLog()
		l.Swanctl(t, "--initiate", "--child", "fragnet", "--timeout", "15")
		sas := e.IKESAs()
		if len(sas) != 1 || !sas[0].PeerID().equal(FQDN("frag-b.lab.example")) || len(sas[0].Children()) != 1 || !sas[0].Fragmentation() {
			t.Fatalf("espy responder: %d IKE SAs", len(sas))
		}
		spiI, spiR := sas[0].SPIs()
		out := l.ListSAs(t)
		for _, want := range []string{fmt.Sprintf("%016x_i* %016x_r", spiI, spiR), "ESTABLISHED", "remote 'frag-a.lab.example'", "INSTALLED"} {
			if !strings.Contains(out, want) {
				t.Fatalf("swanctl --list-sas lacks %q:\n%s", want, out)
			}
		}
		checkFragmented(t, before, logBefore)
		log := strings.TrimPrefix(charonLog(), logBefore)
		split := regexp.MustCompile(`splitting IKE message \(\d+ bytes\) into (\d+) fragments`).FindStringSubmatch(log)
		joined := regexp.MustCompile(`received fragment #\d+ of (\d+), reassembled`).FindStringSubmatch(log)
		if split == nil || joined == nil || fragAtoi(split[1]) < 5 || fragAtoi(joined[1]) < 5 {
			t.Errorf("charon's log does not show at least 5 fragments each way: %q, %q", split, joined)
		}
	})
}

func fragAtoi(s string) int { n, _ := strconv.Atoi(s); return n }
