package ikeservice_test

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/espy-dpi/espy/config"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/ike/ikeservice"
	"github.com/espy-dpi/espy/inline"
	"github.com/espy-dpi/espy/internal/charonlab"
	"github.com/espy-dpi/espy/tun/netns"
	"github.com/rs/zerolog"
)

// nsPeer is one side of the data plane lab: its namespace, outer and
// inner address.
type nsPeer struct {
	name, ns     string
	outer, inner string
}

// dataPlaneYAML configures one service of the lab with dataplane: tun.
func dataPlaneYAML(dir string, me, other nsPeer, start string) []byte {
	return fmt.Appendf(nil, `ike:
  listen: [%[1]s]
  socket: %[2]s
  retransmit: {timeout: 500ms, tries: 3}
  dataplane: tun
  tun_addrs: [%[3]s/32]
tunnels:
  - name: lab
    local_addr: %[1]s
    remote_addr: %[4]s
    local_id: %[5]s.lab.example
    remote_id: %[6]s.lab.example
    auth: {psk_file: %[7]s}
    ike: [aes128gcm16-prfsha256-x25519]
    esp: [null-sha256]
    local_ts: [%[3]s/32]
    remote_ts: [%[8]s/32]
    start_action: %[9]s
`, me.outer, filepath.Join(dir, me.name+".sock"), me.inner, other.outer, me.name, other.name,
		filepath.Join(dir, "psk"), other.inner, start)
}

// TestDataPlaneTUN runs two services in two network namespaces from YAML
// with dataplane: tun: A (start) and B (respond) establish, ping and TCP
// pass through both TUN devices both ways, status over the control
// sockets shows the data plane and its per-Child-SA counters, the inline
// registrar got the SAs too, and closing removes the device.
func TestDataPlaneTUN(t *testing.T) {
	l := charonlab.New(t, charonlab.Options{Name: "svc", Dev: "esv", TUN: true, Needs: []string{"ping"}})
	a := nsPeer{"a", l.A, charonlab.AddrA, "198.51.100.1"}
	b := nsPeer{"b", l.B, charonlab.AddrB, "203.0.113.1"}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "psk"), []byte("netns test key, not a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}

	pb := startIn(t, b.ns, dir, "b", dataPlaneYAML(dir, b, a, "respond"))
	pa := startIn(t, a.ns, dir, "a", dataPlaneYAML(dir, a, b, "start"))
	checkPair(t, pa.waitSAs(t, 1), pb.waitSAs(t, 1))

	for _, c := range []struct {
		from nsPeer
		to   string
	}{{a, b.inner}, {b, a.inner}} {
		out, err := exec.Command("ip", "netns", "exec", c.from.ns, "ping", "-c", "3", "-i", "0.2", "-W", "2", c.to).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %s from %s: %v\n%s\nA: %+v\nB: %+v", c.to, c.from.name, err, out, pa.status(t).DataPlane, pb.status(t).DataPlane)
		}
	}
	charonlab.TCPBothWays(t, a.ns, b.ns, netip.MustParseAddr(b.inner), 256<<10)

	for _, p := range []struct {
		name string
		peer *peer
	}{{"A", pa}, {"B", pb}} {
		st := p.peer.status(t)
		if dp := st.DataPlane; dp == nil || dp.Kind != "tun" || dp.Device != "espy0" || dp.MTU != 1379 || dp.Reason != "ike.dataplane tun" ||
			dp.SelectorDrops != 0 || dp.SendErrors != 0 || dp.TunWriteErrors != 0 {
			t.Errorf("%s: data plane %+v", p.name, st.DataPlane)
		}
		c := st.Tunnels[0].IKESAs[0].ChildSAs[0]
		d := c.DataPlane
		// 3 echoes each way plus TCP: well above 6 packets each way.
		if d == nil || d.PacketsIn < 6 || d.PacketsOut < 6 || d.BytesIn < 256<<10 || d.BytesOut < 256<<10 ||
			d.AuthFailures != 0 || d.ReplayDrops != 0 || d.OtherDrops != 0 || !d.Installed || !d.Active {
			t.Errorf("%s: Child SA %s/%s data plane %+v", p.name, c.SPIIn, c.SPIOut, d)
		}
		if !c.Null {
			t.Errorf("%s: Child SA not ESP-NULL: %+v", p.name, c)
		}
		// The inline registrar got both directions as well.
		if n := p.peer.cache.Stats().Decided; n != 2 {
			t.Errorf("%s: flow cache holds %d decided flows, want 2", p.name, n)
		}
	}

	// Closing deletes the SA at the peer and removes the device.
	pa.close(t)
	pb.waitSAs(t, 0)
	if out, err := exec.Command("ip", "-n", a.ns, "link", "show", "espy0").CombinedOutput(); err == nil {
		t.Errorf("espy0 still in %s after close:\n%s", a.ns, out)
	}
}

// startIn starts a service from YAML inside namespace ns, with the real
// inline registrar on a flow cache.
func startIn(t *testing.T, ns, dir, name string, yaml []byte) *peer {
	t.Helper()
	cfg, err := config.Parse(name+".yaml", yaml)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := flowcache.New(heuristics.New(heuristics.Config{}), flowcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	var svc *ikeservice.Service
	// Sockets, the TUN device and the netlink socket are created on a
	// thread in ns and stay there.
	err = netns.Do(ns, func() (err error) {
		svc, err = ikeservice.Start(ikeservice.Options{Config: cfg, Registrar: inline.NewRegistrar(cache, nil),
			Log: zerolog.New(zerolog.NewTestWriter(t)).With().Str("peer", name).Logger()})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{svc: svc, sock: filepath.Join(dir, name+".sock"), cache: cache}
	t.Cleanup(func() { p.close(t) })
	return p
}
