package ikeservice_test

import (
	"context"
	"fmt"
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

// filePeer is a peer started from a configuration file on disk, which
// ReloadPolicy reads again.
type filePeer struct {
	*peer
	path string
	base []byte // the file without its policy section
}

// startFilePeer writes base plus spd to dir/name.yaml and starts a service
// from it, as espy run does.
func startFilePeer(t *testing.T, dir, name string, base []byte, spd string) *filePeer {
	t.Helper()
	fp := &filePeer{path: filepath.Join(dir, name+".yaml"), base: base}
	fp.write(t, spd)
	cfg, err := config.Load(fp.path)
	if err != nil {
		t.Fatal(err)
	}
	pol, err := policy.LoadFile(fp.path)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := flowcache.New(heuristics.New(heuristics.Config{}), flowcache.Config{})
	if err != nil {
		t.Fatal(err)
	}
	published := 0
	svc, err := ikeservice.Start(ikeservice.Options{Config: cfg, Registrar: inline.NewRegistrar(cache, nil), Policy: pol,
		PublishPolicy: func(*policy.Policy) error { published++; return nil },
		Log:           zerolog.New(zerolog.NewTestWriter(t)).With().Str("peer", name).Logger()})
	if err != nil {
		t.Fatal(err)
	}
	fp.peer = &peer{svc: svc, sock: filepath.Join(dir, name+".sock"), cache: cache}
	t.Cleanup(func() { fp.close(t) })
	return fp
}

func (fp *filePeer) write(t *testing.T, spd string) {
	t.Helper()
	if err := os.WriteFile(fp.path, append(append([]byte(nil), fp.base...), spd...), 0o600); err != nil {
		t.Fatal(err)
	}
}

// reload rewrites the policy section and reloads it over the control
// socket.
func (fp *filePeer) reload(t *testing.T, spd string) ikeservice.Response {
	t.Helper()
	fp.write(t, spd)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	resp, err := ikeservice.Call(ctx, fp.sock, ikeservice.Request{Command: ikeservice.CmdReload})
	if err != nil {
		t.Fatal(err)
	}
	return resp
}

// child returns the tunnel's only Child SA, waiting until there is one
// other than not (by inbound SPI).
func (fp *filePeer) child(t *testing.T, not string) ikeservice.ChildSAStatus {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ts := fp.status(t).Tunnels[0]
		if len(ts.IKESAs) == 1 && len(ts.IKESAs[0].ChildSAs) == 1 && ts.IKESAs[0].ChildSAs[0].SPIIn != not {
			return ts.IKESAs[0].ChildSAs[0]
		}
		if time.Now().After(deadline) {
			t.Fatalf("waiting for a Child SA other than %q: %+v", not, ts)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// spdOf is a policy section that protects lab between the two networks,
// seen from local (this host's side first), after the rules of cut.
func spdOf(local, remote string, cut ...string) string {
	s := "policy:\n  rules:\n"
	for _, c := range cut {
		s += "    - " + c + "\n"
	}
	return s + fmt.Sprintf("    - {name: lab, src: %s, dst: %s, action: protect, sa: lab}\n", local, remote)
}

// TestReloadNarrowsChildSA: two services with a Child SA between
// 198.51.100.0/24 and 203.0.113.0/24; a reload that gives
// 203.0.113.128/25 to a higher-precedence rule rekeys it to
// 203.0.113.0/25 on both sides, and the old SA goes.
func TestReloadNarrowsChildSA(t *testing.T) {
	const (
		aNet, bNet = "198.51.100.0/24", "203.0.113.0/24"
		upper      = "203.0.113.128/25"
	)
	for _, tc := range []struct {
		name   string
		aCut   string // A's new rule, before lab
		action string
	}{
		{"bypass", "{name: upper, src: " + aNet + ", dst: " + upper + ", action: bypass}", "bypass"},
		{"discard", "{name: upper, src: " + aNet + ", dst: " + upper + ", action: discard}", "discard"},
		{"other tunnel", "{name: upper, src: " + aNet + ", dst: " + upper + ", action: protect, sa: other}", "protect"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			b := startFilePeer(t, dir, "b", peerYAML(t, dir, "b", "a", "respond", 1, 1), spdOf(bNet, aNet))
			bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
			a := startFilePeer(t, dir, "a", peerYAML(t, dir, "a", "b", "none", bIKE, bNAT), spdOf(aNet, bNet))
			resp, err := ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdInitiate, Tunnel: "lab"})
			if err != nil || !resp.OK {
				t.Fatalf("initiate: %+v %v", resp, err)
			}
			oldA, oldB := a.child(t, ""), b.child(t, "")
			if oldA.LocalTS[0] != aNet || oldA.RemoteTS[0] != bNet || oldB.LocalTS[0] != bNet {
				t.Fatalf("before the reload: A %v === %v, B %v === %v", oldA.LocalTS, oldA.RemoteTS, oldB.LocalTS, oldB.RemoteTS)
			}

			resp = a.reload(t, spdOf(aNet, bNet, tc.aCut))
			if !resp.OK || resp.Reload == nil {
				t.Fatalf("reload at A: %+v", resp)
			}
			r := resp.Reload
			if r.Rules != 2 || r.Checked != 1 || len(r.Decisions) != 1 {
				t.Fatalf("reload at A: %+v", r)
			}
			d := r.Decisions[0]
			if d.Action != ikeservice.DecisionRekey || d.SPIIn != oldA.SPIIn || d.NewSPIIn == "" || d.Error != "" ||
				strings.Join(d.Lost, ",") != "upper" || d.LocalTS[0] != aNet || d.RemoteTS[0] != "203.0.113.0/25" {
				t.Fatalf("decision: %+v", d)
			}
			// Both sides list the narrowed SA and nothing else: the old one
			// is deleted.
			na, nb := a.child(t, oldA.SPIIn), b.child(t, oldB.SPIIn)
			if na.SPIIn != d.NewSPIIn || na.SPIIn != nb.SPIOut || na.SPIOut != nb.SPIIn ||
				na.LocalTS[0] != aNet || na.RemoteTS[0] != "203.0.113.0/25" ||
				nb.LocalTS[0] != "203.0.113.0/25" || nb.RemoteTS[0] != aNet || len(na.LocalTS) != 1 || len(nb.LocalTS) != 1 {
				t.Errorf("after the rekey: A %+v\nB %+v", na, nb)
			}
			// B's matching reload finds its SA narrowed already.
			bCut := strings.NewReplacer(aNet, "X", upper, "Y").Replace(tc.aCut)
			bCut = strings.NewReplacer("X", upper, "Y", aNet).Replace(bCut)
			resp = b.reload(t, spdOf(bNet, aNet, bCut))
			if !resp.OK || resp.Reload.Checked != 1 || len(resp.Reload.Decisions) != 0 {
				t.Errorf("reload at B: %+v %+v", resp, resp.Reload)
			}
			if c := b.child(t, ""); c.SPIIn != nb.SPIIn {
				t.Errorf("B's reload replaced the narrowed SA: %+v", c)
			}
		})
	}
}

// TestReloadRejectsAndDeletes: a broken policy is rejected with its file,
// line and reason and the old SPD stays in force (a new initiation
// proposes from it); a policy that routes all of the SA's traffic
// elsewhere deletes the Child SA on both sides.
func TestReloadRejectsAndDeletes(t *testing.T) {
	const aNet, bNet = "198.51.100.0/24", "203.0.113.0/24"
	cut := "{name: upper, src: " + aNet + ", dst: 203.0.113.128/25, action: bypass}"
	dir := t.TempDir()
	b := startFilePeer(t, dir, "b", peerYAML(t, dir, "b", "a", "respond", 1, 1), spdOf(bNet, aNet))
	bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
	a := startFilePeer(t, dir, "a", peerYAML(t, dir, "a", "b", "none", bIKE, bNAT), spdOf(aNet, bNet, cut))
	initiate := func() {
		t.Helper()
		resp, err := ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdInitiate, Tunnel: "lab"})
		if err != nil || !resp.OK {
			t.Fatalf("initiate: %+v %v", resp, err)
		}
	}
	// The initiator proposes from the SPD: remote_ts is the /24, the SPD
	// routes only the lower half to lab.
	initiate()
	c := a.child(t, "")
	if c.RemoteTS[0] != "203.0.113.0/25" || c.LocalTS[0] != aNet {
		t.Fatalf("proposal from the SPD: %v === %v", c.LocalTS, c.RemoteTS)
	}

	broken := spdOf(aNet, bNet, cut, "{name: bad, src: 198.51.100.300/24, dst: "+bNet+", action: bypass}")
	resp := a.reload(t, broken)
	line := 0
	for i, l := range strings.Split(string(a.base)+broken, "\n") {
		if strings.Contains(l, "198.51.100.300") {
			line = i + 1
		}
	}
	if resp.OK || resp.Code != ikeservice.ErrCodePolicy || resp.Reload != nil ||
		!strings.Contains(resp.Error, fmt.Sprintf("a.yaml:%d", line)) || !strings.Contains(resp.Error, "198.51.100.300") {
		t.Fatalf("broken policy (line %d): %+v", line, resp)
	}
	if got := a.child(t, ""); got.SPIIn != c.SPIIn {
		t.Errorf("the rejected reload changed the Child SA: %+v", got)
	}
	// The old SPD is in force: a new IKE SA proposes the lower half again.
	if resp, err := ikeservice.Call(context.Background(), a.sock, ikeservice.Request{Command: ikeservice.CmdTerminate, Tunnel: "lab"}); err != nil || !resp.OK {
		t.Fatalf("terminate: %+v %v", resp, err)
	}
	b.waitSAs(t, 0)
	initiate()
	c = a.child(t, "")
	if c.RemoteTS[0] != "203.0.113.0/25" {
		t.Errorf("after the rejected reload: %v === %v", c.LocalTS, c.RemoteTS)
	}
	b.child(t, "")

	// Everything the SA carries now goes to another tunnel: deleted.
	resp = a.reload(t, "policy:\n  rules:\n    - {name: elsewhere, src: "+aNet+", dst: "+bNet+", action: protect, sa: other}\n"+
		"    - {name: lab, src: 192.0.2.0/24, dst: 192.0.2.0/24, action: protect, sa: lab}\n")
	if !resp.OK || len(resp.Reload.Decisions) != 1 {
		t.Fatalf("reload: %+v %+v", resp, resp.Reload)
	}
	if d := resp.Reload.Decisions[0]; d.Action != ikeservice.DecisionDelete || d.SPIIn != c.SPIIn || strings.Join(d.Lost, ",") != "elsewhere" || d.Error != "" {
		t.Errorf("decision: %+v", d)
	}
	for _, p := range []*filePeer{a, b} {
		deadline := time.Now().Add(10 * time.Second)
		for ts := p.status(t).Tunnels[0]; len(ts.IKESAs) != 1 || len(ts.IKESAs[0].ChildSAs) != 0; ts = p.status(t).Tunnels[0] {
			if time.Now().After(deadline) {
				t.Fatalf("Child SA not deleted: %+v", ts)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
}

// TestReloadBothEnds reloads both ends at once: both rekey the same Child
// SA with the narrowed selectors, the collision rule (RFC 7296 2.8.1)
// keeps one new SA, and both ends hold the same narrowed SA.
func TestReloadBothEnds(t *testing.T) {
	const aNet, bNet = "198.51.100.0/24", "203.0.113.0/24"
	dir := t.TempDir()
	b := startFilePeer(t, dir, "b", peerYAML(t, dir, "b", "a", "respond", 1, 1), spdOf(bNet, aNet))
	bIKE, bNAT := natPort(t, b.svc.Addrs()[0])
	a := startFilePeer(t, dir, "a", peerYAML(t, dir, "a", "b", "start", bIKE, bNAT), spdOf(aNet, bNet))
	oldA, oldB := a.child(t, ""), b.child(t, "")
	a.write(t, spdOf(aNet, bNet, "{name: upper, src: "+aNet+", dst: 203.0.113.128/25, action: bypass}"))
	b.write(t, spdOf(bNet, aNet, "{name: upper, src: 203.0.113.128/25, dst: "+aNet+", action: bypass}"))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	type result struct {
		r   ikeservice.ReloadStatus
		err error
	}
	done := make(chan result, 2)
	for _, p := range []*filePeer{a, b} {
		go func() {
			r, err := p.svc.ReloadPolicy(ctx)
			done <- result{r, err}
		}()
	}
	for range 2 {
		res := <-done
		if res.err != nil {
			t.Fatal(res.err)
		}
		// A side may find the SA narrowed already by the other's rekey.
		for _, d := range res.r.Decisions {
			if d.Action != ikeservice.DecisionRekey {
				t.Errorf("decision: %+v", d)
			}
		}
	}
	na, nb := a.child(t, oldA.SPIIn), b.child(t, oldB.SPIIn)
	if na.SPIIn != nb.SPIOut || na.SPIOut != nb.SPIIn || na.RemoteTS[0] != "203.0.113.0/25" || nb.LocalTS[0] != "203.0.113.0/25" {
		t.Errorf("after both reloads: A %+v\nB %+v", na, nb)
	}
}
