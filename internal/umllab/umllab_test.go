package umllab

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestGuest boots a guest running this test, which checks from inside
// that it got the UML kernel with ESP, XFRM netlink and network
// namespaces. The xfrm interop test boots the same way, so by default
// (CI's time budget) this runs only with ESPY_LONG=1.
func TestGuest(t *testing.T) {
	if InGuest() == "" && os.Getenv("ESPY_LONG") == "" {
		t.Skip("boots a second guest; set ESPY_LONG=1 (the xfrm interop test covers booting)")
	}
	if InGuest() == "guest" {
		out, err := exec.Command("uname", "-r").Output()
		if rel, _ := Release(); err != nil || strings.TrimSpace(string(out)) != rel {
			t.Fatalf("uname -r = %q (%v), want the UML release %q", out, err, rel)
		}
		for _, m := range XFRMModules {
			// Built-in ones would have no directory; the list has none.
			if _, err := os.Stat("/sys/module/" + strings.ReplaceAll(m, "-", "_")); err != nil {
				t.Errorf("module %s not loaded: %v", m, err)
			}
		}
		if out, err := exec.Command("ip", "netns", "add", "umltest").CombinedOutput(); err != nil {
			t.Errorf("ip netns add: %v %s", err, out)
		}
		if out, err := exec.Command("ip", "xfrm", "state").CombinedOutput(); err != nil {
			t.Errorf("ip xfrm state: %v %s", err, out)
		}
		if d := os.Getenv("TMPDIR"); d != "/var/tmp" {
			t.Errorf("TMPDIR %q", d)
		}
		return
	}
	r := RunTest(t, "guest", Options{Modules: XFRMModules, NoAutoload: true, Timeout: 90 * time.Second})
	if !strings.Contains(string(r.Output), "--- PASS: TestGuest") {
		t.Errorf("guest output lacks the test's pass:\n%s", r.Output)
	}
}

// TestTimeout checks that a guest past its timeout is killed, with its
// helper processes.
func TestTimeout(t *testing.T) {
	Skip(t)
	start := time.Now()
	_, err := Run(Options{Command: []string{"sleep", "600"}, Timeout: 3 * time.Second})
	if !errors.Is(err, ErrNoStatus) {
		t.Fatalf("sleeping guest: %v", err)
	}
	if d := time.Since(start); d > 8*time.Second {
		t.Errorf("killing the guest took %v", d)
	}
}

// TestStatus checks that a failing command's output and status come
// back, and logs the boot time (ESPY_LONG=1: a full boot).
func TestStatus(t *testing.T) {
	if os.Getenv("ESPY_LONG") == "" {
		t.Skip("boots a guest; set ESPY_LONG=1 (the xfrm interop test checks a guest's status too)")
	}
	Skip(t)
	r, err := Run(Options{Command: []string{"sh", "-c", "echo out; exit 3"}, Timeout: 60 * time.Second})
	if err != nil || r.Status != 3 || string(r.Output) != "out\n" {
		t.Fatalf("status %d output %q: %v", r.Status, r.Output, err)
	}
	t.Logf("boot %v, setup %v, command %v, total %v", r.Boot, r.Setup, r.Command, r.Total)
}
