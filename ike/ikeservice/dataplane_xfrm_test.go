package ikeservice_test

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/internal/charonlab"
	"github.com/espy-dpi/espy/internal/umllab"
)

// xfrmYAML configures one service of the lab with dataplane: xfrm and a
// transport-mode tunnel between the outer addresses.
func xfrmYAML(dir string, me, other nsPeer, start string) []byte {
	return fmt.Appendf(nil, `ike:
  listen: [%[1]s]
  socket: %[2]s
  retransmit: {timeout: 2s, tries: 3}
  dataplane: xfrm
tunnels:
  - name: lab
    local_addr: %[1]s
    remote_addr: %[3]s
    local_id: %[4]s.lab.example
    remote_id: %[5]s.lab.example
    auth: {psk_file: %[6]s}
    ike: [aes128gcm16-prfsha256-x25519]
    esp: [aes128gmac]
    mode: transport
    start_action: %[7]s
`, me.outer, filepath.Join(dir, me.name+".sock"), other.outer, me.name, other.name, filepath.Join(dir, "psk"), start)
}

// TestDataPlaneXFRM runs two services with dataplane: xfrm in a
// User-Mode Linux guest (the host kernel has no ESP): A (start) and B
// (respond) establish an ESP-NULL (GMAC) transport-mode Child SA in the
// kernel, ping passes both ways, status shows the XFRM data plane and the
// kernel's per-Child-SA counters, and closing removes the kernel state.
func TestDataPlaneXFRM(t *testing.T) {
	if umllab.InGuest() != "ikeservice-xfrm" {
		umllab.RunTest(t, "ikeservice-xfrm", umllab.Options{Modules: umllab.XFRMModules, NoAutoload: true, Timeout: 120 * time.Second})
		return
	}
	l := charonlab.New(t, charonlab.Options{Name: "svcx", Dev: "esx", Needs: []string{"ping"}})
	a := nsPeer{"a", l.A, charonlab.AddrA, ""}
	b := nsPeer{"b", l.B, charonlab.AddrB, ""}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "psk"), []byte("netns test key, not a secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	pb := startIn(t, b.ns, dir, "b", xfrmYAML(dir, b, a, "respond"))
	pa := startIn(t, a.ns, dir, "a", xfrmYAML(dir, a, b, "start"))
	checkPair(t, pa.waitSAs(t, 1), pb.waitSAs(t, 1))
	for _, c := range []struct{ ns, to string }{{a.ns, b.outer}, {b.ns, a.outer}} {
		out, err := exec.Command("ip", "netns", "exec", c.ns, "ping", "-c", "3", "-i", "0.2", "-W", "3", c.to).CombinedOutput()
		if err != nil {
			t.Fatalf("ping %s: %v\n%s", c.to, err, out)
		}
	}
	for _, p := range []struct {
		name string
		peer *peer
	}{{"A", pa}, {"B", pb}} {
		st := p.peer.status(t)
		if dp := st.DataPlane; dp == nil || dp.Kind != "xfrm" || dp.Reason != "ike.dataplane xfrm" || !dp.KernelESP {
			t.Errorf("%s: data plane %+v", p.name, st.DataPlane)
		}
		c := st.Tunnels[0].IKESAs[0].ChildSAs[0]
		if d := c.DataPlane; d == nil || d.PacketsIn < 3 || d.PacketsOut < 3 || d.AuthFailures != 0 || !d.Installed {
			t.Errorf("%s: Child SA %s/%s data plane %+v", p.name, c.SPIIn, c.SPIOut, d)
		}
	}
	pa.close(t)
	pb.waitSAs(t, 0)
	if out, _ := exec.Command("ip", "-n", a.ns, "xfrm", "state").CombinedOutput(); strings.TrimSpace(string(out)) != "" {
		t.Errorf("XFRM state left in A after close:\n%s", out)
	}
}
