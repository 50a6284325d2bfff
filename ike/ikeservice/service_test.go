package ikeservice_test

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/ike/ikeservice"
	"github.com/espy-dpi/espy/inline"
	"github.com/espy-dpi/espy/policy"
	"github.com/rs/zerolog"
)

// nets are the protected networks behind each peer.
var nets = map[string]string{"a": "198.51.100.0/24", "b": "203.0.113.0/24"}

// peerYAML is a tunnel configuration for one of two services on loopback.
func peerYAML(t *testing.T, dir, local, remote, start string, remotePort, remoteNAT uint16) []byte {
	t.Helper()
	psk := filepath.Join(dir, "psk")
	if err := os.WriteFile(psk, []byte("loopback test key, not a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return fmt.Appendf(nil, `ike:
  listen: [127.0.0.1]
  port: 0
  nat_port: 0
  socket: %s
  retransmit: {timeout: 500ms, tries: 3}
tunnels:
  - name: lab
    local_addr: 127.0.0.1
    remote_addr: 127.0.0.1
    remote_port: %d
    remote_nat_port: %d
    local_id: %s.lab.example
    remote_id: %s.lab.example
    auth: {psk_file: %s}
    ike: [aes128gcm16-prfsha256-x25519]
    esp: [null-sha256, aes128gcm16]
    local_ts: [%s]
    remote_ts: [%s]
    start_action: %s
`, filepath.Join(dir, local+".sock"), remotePort, remoteNAT, local, remote, psk, nets[local], nets[remote], start)
}

type peer struct {
	svc   *ikeservice.Service
	sock  string
	cache *flowcache.Cache
}

// startPeer starts a service from YAML with the real inline registrar on a
// flow cache (no fast path).
func startPeer(t *testing.T, dir, name string, yaml []byte) *peer {
	t.Helper()
	cfg, err := config.Parse(name+".yaml", yaml)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := flowcache.New(heuristics.New(heuristics.Config{}), flowcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var pol *policy.Policy
	if cfg.Policy.Kind != 0 {
		if pol, err = policy.Parse(name+".yaml", yaml); err != nil {
			t.Fatal(err)
		}
	}
	svc, err := ikeservice.Start(ikeservice.Options{Config: cfg, Registrar: inline.NewRegistrar(cache, nil), Policy: pol,
		Log: zerolog.New(zerolog.NewTestWriter(t)).With().Str("peer", name).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{svc: svc, sock: filepath.Join(dir, name+".sock"), cache: cache}
	t.Cleanup(func() { p.close(t) })
	return p
}

func (p *peer) close(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := p.svc.Close(ctx); err != nil {
		t.Errorf("close: %v", err)
	}
}

// status asks over the control socket.
func (p *peer) status(t *testing.T) ikeservice.Status {
	t.Helper()
	resp, err := ikeservice.Call(context.Background(), p.sock, ikeservice.Request{Command: ikeservice.CmdStatus})
	if err != nil || !resp.OK || resp.Status == nil {
		t.Fatalf("status: %+v %v", resp, err)
	}
	return *resp.Status
}

// waitSAs polls status until the tunnel has n IKE SAs, each with one Child
// SA.
func (p *peer) waitSAs(t *testing.T, n int) ikeservice.TunnelStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := p.status(t)
		ts := st.Tunnels[0]
		ok := len(ts.IKESAs) == n
		for _, sa := range ts.IKESAs {
			ok = ok && len(sa.ChildSAs) == 1
		}
		if ok {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for %d IKE SAs: %+v", n, ts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func natPort(t *testing.T, l ikeservice.Listener) (ike, natt uint16) {
	t.Helper()
	var a, b uint16
	if _, err := fmt.Sscanf(l.IKE[strings.LastIndexByte(l.IKE, ':')+1:], "%d", &a); err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Sscanf(l.NATT[strings.LastIndexByte(l.NATT, ':')+1:], "%d", &b); err != nil {
		t.Fatal(err)
	}
	return a, b
}

// TestTwoServices runs two services on loopback: A initiates (start), B
// responds; then terminate, initiate and a restart of A, all over the
// control sockets.
func TestTwoServices(t *testing.T) {
	dir := t.TempDir()
	b := startPeer(t, dir, "b", peerYAML(t, dir, "b", "a", "respond", 1, 1))
	bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
	aYAML := peerYAML(t, dir, "a", "b", "start", bIKE, bNAT)
	a := startPeer(t, dir, "a", aYAML)

	ta, tb := a.waitSAs(t, 1), b.waitSAs(t, 1)
	checkPair(t, ta, tb)
	ca := ta.IKESAs[0].ChildSAs[0]
	if ca.Encr != "null" || ca.Integ != "hmac-sha2-256-128" || !ca.Null || ca.Mode != "tunnel" || ca.Encap != "none" ||
		ca.LocalTS[0] != "198.51.100.0/24" || ca.RemoteTS[0] != "203.0.113.0/24" {
		t.Errorf("A's Child SA: %+v", ca)
	}
	if ta.StartAction != "start" || tb.StartAction != "respond" || !ta.IKESAs[0].Initiator || tb.IKESAs[0].Initiator {
		t.Errorf("roles: A %+v, B %+v", ta, tb)
	}
	// Without ike.dataplane nothing carries the traffic, and status says so.
	if dp := a.status(t).DataPlane; dp == nil || dp.Kind != "none" || dp.Device != "" || !strings.Contains(dp.Reason, "none") || ca.DataPlane != nil {
		t.Errorf("data plane without ike.dataplane: %+v, Child SA %+v", dp, ca.DataPlane)
	}
	// The inline registrar got both directions on both sides.
	for _, p := range []*peer{a, b} {
		if st := p.cache.Stats(); st.Decided != 2 {
			t.Errorf("flow cache holds %d decided flows, want 2 (both directions)", st.Decided)
		}
	}

	// Terminate on A: gone on both sides, and A does not re-initiate.
	resp, err := ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdTerminate, Tunnel: "lab"})
	if err != nil || !resp.OK {
		t.Fatalf("terminate: %+v %v", resp, err)
	}
	b.waitSAs(t, 0)
	a.waitSAs(t, 0)
	for _, p := range []*peer{a, b} {
		if st := p.cache.Stats(); st.Decided != 0 {
			t.Errorf("flow cache holds %d flows after terminate", st.Decided)
		}
	}
	time.Sleep(1500 * time.Millisecond) // longer than the first back-off
	if n := len(a.status(t).Tunnels[0].IKESAs); n != 0 {
		t.Fatalf("A re-initiated a terminated tunnel (%d IKE SAs)", n)
	}
	resp, err = ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdTerminate, Tunnel: "lab"})
	if err != nil || resp.OK || resp.Code != ikeservice.ErrCodeNotUp {
		t.Errorf("second terminate: %+v %v", resp, err)
	}

	// Initiate brings it back.
	resp, err = ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdInitiate, Tunnel: "lab"})
	if err != nil || !resp.OK || resp.Tunnel == nil || resp.Tunnel.State != "established" {
		t.Fatalf("initiate: %+v %v", resp, err)
	}
	checkPair(t, a.waitSAs(t, 1), b.waitSAs(t, 1))

	// Unknown names are an error with its own code.
	resp, err = ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdInitiate, Tunnel: "nope"})
	if err != nil || resp.OK || resp.Code != ikeservice.ErrCodeUnknownTunnel || !strings.Contains(resp.Error, `"nope"`) {
		t.Errorf("unknown tunnel: %+v %v", resp, err)
	}

	// A restart of A: the old SA goes, a new one comes up at start.
	a.close(t)
	b.waitSAs(t, 0)
	a2 := startPeer(t, dir, "a", aYAML)
	checkPair(t, a2.waitSAs(t, 1), b.waitSAs(t, 1))
}

// checkPair checks that both ends list the same IKE SA and Child SA.
func checkPair(t *testing.T, a, b ikeservice.TunnelStatus) {
	t.Helper()
	sa, sb := a.IKESAs[0], b.IKESAs[0]
	if sa.SPIi != sb.SPIi || sa.SPIr != sb.SPIr || sa.Encr != "aes-gcm-16-128" || sa.PRF != "hmac-sha2-256" || sa.DH != "curve25519" ||
		sa.PeerID != "b.lab.example" || sb.PeerID != "a.lab.example" {
		t.Errorf("IKE SAs differ or are wrong:\nA %+v\nB %+v", sa, sb)
	}
	ca, cb := sa.ChildSAs[0], sb.ChildSAs[0]
	if ca.SPIIn != cb.SPIOut || ca.SPIOut != cb.SPIIn || ca.Established.IsZero() {
		t.Errorf("Child SAs do not match:\nA %+v\nB %+v", ca, cb)
	}
}

// TestSPDNarrowing: a responder whose tunnel a PROTECT rule names narrows
// through the SPD (policy/ikets), not through its local_ts/remote_ts, and
// refuses traffic the SPD protects with another tunnel.
func TestSPDNarrowing(t *testing.T) {
	for _, tt := range []struct {
		name, spd string
		localTS   string // A's view of B's side after narrowing; "" refused
	}{
		{"narrowed", `policy:
  rules:
    - {name: lab-half, src: 203.0.113.0/25, dst: 198.51.100.0/24, action: protect, sa: lab}
    - {name: other, src: 203.0.113.128/25, dst: 198.51.100.0/24, action: protect, sa: other}
`, "203.0.113.0/25"},
		{"other tunnel", `policy:
  rules:
    - {name: other, src: 203.0.113.0/24, dst: 198.51.100.0/24, action: protect, sa: other}
    - {name: lab, src: 192.0.2.0/24, dst: 192.0.2.0/24, action: protect, sa: lab}
`, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			b := startPeer(t, dir, "b", append(peerYAML(t, dir, "b", "a", "respond", 1, 1), tt.spd...))
			bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
			a := startPeer(t, dir, "a", peerYAML(t, dir, "a", "b", "none", bIKE, bNAT))
			resp, err := ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdInitiate, Tunnel: "lab"})
			if err != nil {
				t.Fatal(err)
			}
			if tt.localTS == "" {
				if resp.OK || !strings.Contains(resp.Error, "TS_UNACCEPTABLE") {
					t.Fatalf("initiate: %+v, want TS_UNACCEPTABLE", resp)
				}
				return
			}
			if !resp.OK {
				t.Fatalf("initiate: %+v", resp)
			}
			c := a.waitSAs(t, 1).IKESAs[0].ChildSAs[0]
			cb := b.waitSAs(t, 1).IKESAs[0].ChildSAs[0]
			if c.RemoteTS[0] != tt.localTS || cb.LocalTS[0] != tt.localTS || c.LocalTS[0] != "198.51.100.0/24" {
				t.Errorf("selectors: A %v === %v, B %v === %v", c.LocalTS, c.RemoteTS, cb.LocalTS, cb.RemoteTS)
			}
		})
	}
}

// TestControlSocketPath: a live socket of another service and a file that
// is not a socket make Start fail; a stale socket is replaced.
func TestControlSocketPath(t *testing.T) {
	dir := t.TempDir()
	yaml := peerYAML(t, dir, "a", "b", "none", 500, 4500)
	a := startPeer(t, dir, "a", yaml)
	start := func() error {
		cfg, err := config.Parse("a.yaml", yaml)
		if err != nil {
			t.Fatal(err)
		}
		svc, err := ikeservice.Start(ikeservice.Options{Config: cfg})
		if err == nil {
			svc.Close(context.Background())
		}
		return err
	}
	if err := start(); err == nil || !strings.Contains(err.Error(), "in use by another process") {
		t.Errorf("second service on a live socket: %v", err)
	}
	a.close(t)
	if err := os.WriteFile(a.sock, []byte("not a socket"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := start(); err == nil || !strings.Contains(err.Error(), "is not a socket") {
		t.Errorf("socket path is a file: %v", err)
	}
	if b, _ := os.ReadFile(a.sock); string(b) != "not a socket" {
		t.Error("the file was replaced")
	}
	os.Remove(a.sock)
	// A stale socket (its listener gone without removing it).
	ln, err := net.Listen("unix", a.sock)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if err := start(); err != nil {
		t.Errorf("stale socket: %v", err)
	}
}

// waitNew polls until the tunnel has one IKE SA, with a Child SA, other
// than not (by SPIi), or fails after d.
func (p *peer) waitNew(t *testing.T, not string, d time.Duration) ikeservice.TunnelStatus {
	t.Helper()
	deadline := time.Now().Add(d)
	for {
		ts := p.status(t).Tunnels[0]
		if len(ts.IKESAs) == 1 && len(ts.IKESAs[0].ChildSAs) == 1 && ts.IKESAs[0].SPIi != not {
			return ts
		}
		if time.Now().After(deadline) {
			t.Fatalf("no new IKE SA within %v: %+v", d, ts)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestStartKeepsUp: a start tunnel is initiated again when the peer deletes
// its IKE SA, and keeps trying with back-off while the peer is away.
func TestStartKeepsUp(t *testing.T) {
	dir := t.TempDir()
	bYAML := peerYAML(t, dir, "b", "a", "respond", 1, 1)
	b := startPeer(t, dir, "b", bYAML)
	bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
	// Short retransmissions: a failed attempt takes 0.3 s.
	aYAML := bytes.Replace(peerYAML(t, dir, "a", "b", "start", bIKE, bNAT), []byte("{timeout: 500ms, tries: 3}"), []byte("{timeout: 100ms, tries: 1}"), 1)
	a := startPeer(t, dir, "a", aYAML)
	first := a.waitSAs(t, 1).IKESAs[0].SPIi

	// The peer deletes it: A comes back with a new IKE SA.
	resp, err := ikeservice.Call(context.Background(), b.sock, ikeservice.Request{Command: ikeservice.CmdTerminate, Tunnel: "lab"})
	if err != nil || !resp.OK {
		t.Fatalf("terminate at B: %+v %v", resp, err)
	}
	second := a.waitNew(t, first, 10*time.Second).IKESAs[0].SPIi
	b.waitSAs(t, 1)

	// The peer goes away: A fails, says why, and gets through once B is
	// back on the same ports.
	b.close(t)
	deadline := time.Now().Add(10 * time.Second)
	for ts := a.status(t).Tunnels[0]; len(ts.IKESAs) != 0 || ts.LastError == ""; ts = a.status(t).Tunnels[0] {
		if time.Now().After(deadline) {
			t.Fatalf("A does not report the failed initiation: %+v", ts)
		}
		time.Sleep(50 * time.Millisecond)
	}
	fixed := bytes.Replace(bYAML, []byte("port: 0\n  nat_port: 0"), fmt.Appendf(nil, "port: %d\n  nat_port: %d", bIKE, bNAT), 1)
	b2 := startPeer(t, dir, "b", fixed)
	ts := a.waitNew(t, second, 20*time.Second)
	if ts.State != "established" || ts.LastError != "" {
		t.Errorf("after the peer came back: %+v", ts)
	}
	b2.waitSAs(t, 1)
}
