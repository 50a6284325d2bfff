package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikeservice"
)

// TestRunPolicyReload runs two "espy run" (IKE only) whose tunnel the SPD
// names, and changes A's policy section at runtime: SIGHUP with a rule
// that takes 203.0.113.128/25 rekeys the Child SA to 203.0.113.0/25 on
// both ends; "espy ike reload" of a broken file fails with its line and
// keeps the SPD; a reload that routes all of it elsewhere deletes it.
func TestRunPolicyReload(t *testing.T) {
	bin := buildEspy(t)
	dir := t.TempDir()
	t.Setenv("ESPY_TEST_PSK", "e2e loopback key, not a secret")
	const aNet, bNet = "198.51.100.0/24", "203.0.113.0/24"
	spd := func(local, remote string, first ...string) string {
		s := "policy:\n  rules:\n"
		for _, r := range first {
			s += "    - " + r + "\n"
		}
		return s + "    - {name: lab, src: " + local + ", dst: " + remote + ", action: protect, sa: lab}\n"
	}
	write := func(name, body string) string {
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	b := startEspyRun(t, bin, "--config", write("b", runYAML(dir, "b", "a", "respond", 1, 1)+spd(bNet, aNet)))
	bIKE, bNAT := b.listening(t)
	aBase := runYAML(dir, "a", "b", "start", bIKE, bNAT)
	a := startEspyRun(t, bin, "--config", write("a", aBase+spd(aNet, bNet)))
	aSock, bSock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")
	old := waitTunnel(t, bin, aSock, "established").IKESAs[0].ChildSAs[0]
	waitTunnel(t, bin, bSock, "established")

	// SIGHUP: re-read, rekey with the narrowed selectors.
	write("a", aBase+spd(aNet, bNet, "{name: upper, src: "+aNet+", dst: 203.0.113.128/25, action: bypass}"))
	a.cmd.Process.Signal(syscall.SIGHUP)
	child := func(sock string, ok func(c ikeservice.ChildSAStatus) bool) ikeservice.ChildSAStatus {
		t.Helper()
		deadline := time.Now().Add(15 * time.Second)
		for {
			ts := waitTunnel(t, bin, sock, "established")
			if cs := ts.IKESAs[0].ChildSAs; len(cs) == 1 && ok(cs[0]) {
				return cs[0]
			}
			if time.Now().After(deadline) {
				t.Fatalf("%s: %+v", sock, ts)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	na := child(aSock, func(c ikeservice.ChildSAStatus) bool { return c.SPIIn != old.SPIIn })
	nb := child(bSock, func(c ikeservice.ChildSAStatus) bool { return c.SPIOut == na.SPIIn })
	if na.RemoteTS[0] != "203.0.113.0/25" || na.LocalTS[0] != aNet || nb.LocalTS[0] != "203.0.113.0/25" || nb.RemoteTS[0] != aNet {
		t.Errorf("after SIGHUP: A %v === %v, B %v === %v", na.LocalTS, na.RemoteTS, nb.LocalTS, nb.RemoteTS)
	}

	// A broken policy: rejected with file and line, the SA stays.
	write("a", aBase+spd(aNet, bNet, "{name: bad, src: "+aNet+", dst: 203.0.113.0/33, action: bypass}"))
	line := strings.Count(aBase, "\n") + 3
	code, out, errOut := espyCmd(t, bin, "ike", "reload", "--socket", aSock)
	if code != 1 || !strings.Contains(errOut, "a.yaml:"+strconv.Itoa(line)) || !strings.Contains(errOut, "203.0.113.0/33") {
		t.Errorf("reload of a broken policy (line %d): exit %d\n%s%s", line, code, out, errOut)
	}
	a.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(a.log(), "policy reload rejected") {
		if time.Now().After(deadline) {
			t.Fatal("SIGHUP with a broken policy: no rejection logged")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if c := child(aSock, func(ikeservice.ChildSAStatus) bool { return true }); c.SPIIn != na.SPIIn {
		t.Errorf("the rejected policy changed the SA: %+v", c)
	}

	// Everything routed to another tunnel: deleted on both ends.
	write("a", aBase+"policy:\n  rules:\n    - {name: elsewhere, src: "+aNet+", dst: "+bNet+", action: protect, sa: other}\n")
	code, out, errOut = espyCmd(t, bin, "ike", "reload", "--socket", aSock)
	if code != 0 || !strings.Contains(out, "1 changed") || !strings.Contains(out, na.SPIIn+": delete (lost to elsewhere)") {
		t.Errorf("reload: exit %d\n%s%s", code, out, errOut)
	}
	for _, sock := range []string{aSock, bSock} {
		deadline := time.Now().Add(10 * time.Second)
		for len(waitTunnel(t, bin, sock, "established").IKESAs[0].ChildSAs) != 0 {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the Child SA was not deleted", sock)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	if code := a.stop(t); code != 0 {
		t.Errorf("espy run A exited %d", code)
	}
	b.stop(t)
}
