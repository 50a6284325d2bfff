package ike

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/internal/charonlab"
)

// rekeyConn is a second charon-initiated connection whose Child SA uses
// PFS (the ESP proposal names a group: charon sends a KE when rekeying).
var rekeyConn = charonlab.Conn{Name: "toespypfs", Proposals: "aes128gcm16-prfsha256-x25519",
	Children: []charonlab.Child{{Name: "tonetpfs", ESP: "aes128gcm16-ecp256"}}}.String()

// waitSAs polls swanctl --list-sas until cond holds for its output.
func (l *lab) waitSAs(t *testing.T, what string, cond func(string) bool) string {
	t.Helper()
	return l.AwaitSAs(t, what, 10*time.Second, cond)
}

// spisListed reports whether charon lists c with its inbound and outbound
// SPIs (charon's "in" is our OutSPI).
func spisListed(out string, c *ChildSA) (in, outb bool) {
	return strings.Contains(out, fmt.Sprintf("in  %08x", c.OutSPI)), strings.Contains(out, fmt.Sprintf("out %08x", c.InSPI))
}

var (
	charonKeyLine  = regexp.MustCompile(`\[CHD\] (encryption|integrity) (initiator|responder) key => (\d+) bytes`)
	charonDumpLine = regexp.MustCompile(`\[CHD\]\s+\d+: (.*)$`)
)

// charonChildKeys returns the keys charon logged (chd = 4) for the Child
// SA it installed with SPIs in (its inbound, our OutSPI) and out, keyed
// "encryption initiator" and so on.
func charonChildKeys(t *testing.T, l *lab, in, out uint32) map[string][]byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(l.Dir, "charon.log"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(raw), "\n")
	ours := fmt.Sprintf("established with SPIs %08x_i %08x_o", in, out)
	end := -1
	for i, ln := range lines {
		if strings.Contains(ln, ours) {
			end = i
		}
	}
	if end < 0 {
		t.Fatalf("charon's log has no Child SA %08x_i %08x_o", in, out)
	}
	keys := map[string][]byte{}
	for i := end - 1; i >= 0 && len(keys) < 4; i-- {
		if strings.Contains(lines[i], "established with SPIs") && !strings.Contains(lines[i], ours) {
			break // the previous Child SA
		}
		m := charonKeyLine.FindStringSubmatch(lines[i])
		if m == nil || keys[m[1]+" "+m[2]] != nil {
			continue
		}
		n, _ := strconv.Atoi(m[3])
		var k []byte
		for j := i + 1; j < len(lines) && len(k) < n; j++ {
			d := charonDumpLine.FindStringSubmatch(lines[j])
			if d == nil {
				break
			}
			// Each dump line holds 16 bytes (fewer on the last), then
			// their ASCII rendering.
			toks := strings.Fields(d[1])
			for want := min(16, n-len(k)); want > 0 && len(toks) > 0; want-- {
				b, err := hex.DecodeString(toks[0])
				if err != nil || len(b) != 1 {
					t.Fatalf("charon key dump %q", lines[j])
				}
				k, toks = append(k, b[0]), toks[1:]
			}
		}
		keys[m[1]+" "+m[2]] = k
	}
	return keys
}

// TestInteropRekey rekeys a Child SA between espy and charon 5.9.8 in both
// directions, with and without PFS: charon rekeys (swanctl --rekey) a
// Child SA espy answered, and espy rekeys (RekeyChild) a Child SA it
// initiated. Afterwards charon lists the new SPIs and not the old ones, and
// espy's registrar holds exactly the new SA.
func TestInteropRekey(t *testing.T) {
	l := newLab(t)
	l.extraConns = rekeyConn
	l.startCharon(t, "aes128gcm16-prfsha256-x25519", "aes128gcm16-x25519,null-sha256", "aes128gcm16-prfsha256-x25519", "null-sha256")
	e := l.listenIn(t)
	reg := &eventRecorder{}
	rcfg := interopConfig("aes128gcm16-prfsha256-x25519", "null-sha256", reg)
	rcfg.ESP = []Proposal{MustParseProposal("null-sha256", false), MustParseProposal("aes128gcm16-ecp256", false)}
	if err := e.Respond(rcfg); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		byCharon bool
		child    string // charon's child (charon initiates) or espy's ESP proposal
		pfs      uint16
		ike      string // charon's IKE connection name
	}{
		{name: "charon", byCharon: true, child: "tonet", ike: "toespy"},
		{name: "charon-pfs", byCharon: true, child: "tonetpfs", ike: "toespypfs", pfs: 19},
		{name: "espy", child: "null-sha256"},
		{name: "espy-pfs", child: "aes128gcm16-x25519", pfs: 31},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			var sa *IKESA
			if tc.byCharon {
				sa = l.charonInitiates(t, e, tc.child)
			} else {
				var err error
				sa, err = e.Initiate(ctx, interopConfig("aes128gcm16-prfsha256-x25519", tc.child, reg), netip.AddrPortFrom(charonAddr, DefaultPort))
				if err != nil {
					t.Fatal(err)
				}
			}
			defer func() {
				sa.Delete(ctx)
				waitFor(t, func() bool { return reg.len() == 0 })
			}()
			old := sa.Children()[0]
			l.waitSAs(t, "the Child SA", func(out string) bool { a, b := spisListed(out, old); return a && b })
			reg.emu.Lock()
			reg.events = nil
			reg.emu.Unlock()

			var nc *ChildSA
			if tc.byCharon {
				l.Swanctl(t, "--rekey", "--child", tc.child)
				waitFor(t, func() bool { c := sa.Children(); return len(c) == 1 && c[0] != old })
				nc = sa.Children()[0]
			} else {
				var err error
				if nc, err = sa.RekeyChild(ctx, old); err != nil {
					t.Fatal(err)
				}
			}
			if nc.Suite.DH != tc.pfs {
				t.Fatalf("new Child SA has PFS group %d, want %d", nc.Suite.DH, tc.pfs)
			}
			if nc.Initiated == tc.byCharon {
				t.Fatalf("Initiated = %v for a rekey by charon = %v", nc.Initiated, tc.byCharon)
			}
			if fmt.Sprint(nc.LocalTS, nc.RemoteTS) != fmt.Sprint(old.LocalTS, old.RemoteTS) {
				t.Fatalf("selectors changed: %v/%v -> %v/%v", old.LocalTS, old.RemoteTS, nc.LocalTS, nc.RemoteTS)
			}
			out := l.waitSAs(t, "new SPIs listed, old ones gone", func(out string) bool {
				ni, no := spisListed(out, nc)
				oi, oo := spisListed(out, old)
				return ni && no && !oi && !oo && strings.Count(out, "INSTALLED") == 1
			})
			if tc.pfs != 0 && !strings.Contains(out, map[uint16]string{19: "ECP_256", 31: "CURVE_25519"}[tc.pfs]) {
				t.Fatalf("charon lists no PFS group for the Child SA:\n%s", out)
			}
			// charon derived the same KEYMAT (with the new DH secret under
			// PFS) as espy.
			ck := charonChildKeys(t, l, nc.OutSPI, nc.InSPI)
			for name, k := range map[string][]byte{"encryption initiator": nc.Keys.EncrI, "encryption responder": nc.Keys.EncrR,
				"integrity initiator": nc.Keys.IntegI, "integrity responder": nc.Keys.IntegR} {
				if len(k) > 0 && !bytes.Equal(ck[name], k) {
					t.Fatalf("%s key: charon %x, espy %x", name, ck[name], k)
				}
			}
			waitFor(t, func() bool { return reg.len() == 2 })
			if _, ok := reg.get(nc.InSPI); !ok {
				t.Fatal("new inbound SA not registered")
			}
			if _, ok := reg.get(nc.OutSPI); !ok {
				t.Fatal("new outbound SA not registered")
			}
			ev := reg.log()
			want := []string{fmt.Sprintf("+%08x", nc.OutSPI), fmt.Sprintf("+%08x", nc.InSPI), fmt.Sprintf("-%08x", old.OutSPI), fmt.Sprintf("-%08x", old.InSPI)}
			if fmt.Sprint(ev) != fmt.Sprint(want) {
				t.Fatalf("registrar events %v, want %v", ev, want)
			}
		})
	}
}

// TestInteropIKERekey has charon rekey the IKE SA espy answered (swanctl
// --rekey --ike): espy takes the new SPIs and keys, keeps the Child SA
// registered, answers liveness checks on the new SA, and drops the old
// keys when charon deletes the old SA. Then espy rekeys the IKE SA
// (RekeyIKE) and a Child SA on it.
func TestInteropIKERekey(t *testing.T) {
	l := newLab(t)
	l.startCharon(t, "aes128gcm16-prfsha256-x25519", "null-sha256", "aes128gcm16-prfsha256-x25519", "null-sha256")
	e := l.listenIn(t)
	reg := &recorder{}
	if err := e.Respond(interopConfig("aes128gcm16-prfsha256-x25519", "null-sha256", reg)); err != nil {
		t.Fatal(err)
	}
	sa := l.charonInitiates(t, e, "tonet")
	oldI, oldR := sa.SPIs()
	child := sa.Children()[0]
	l.Swanctl(t, "--rekey", "--ike", "toespy")
	waitFor(t, func() bool { a, _ := sa.SPIs(); return a != oldI })
	newI, newR := sa.SPIs()
	if newR == oldR {
		t.Fatal("our SPI did not change")
	}
	out := l.waitSAs(t, "the new IKE SPIs and the old ones gone", func(out string) bool {
		return strings.Contains(out, fmt.Sprintf("%016x_i* %016x_r", newI, newR)) && !strings.Contains(out, fmt.Sprintf("%016x_i", oldI))
	})
	if a, b := spisListed(out, child); !a || !b {
		t.Fatalf("charon lost the Child SA:\n%s", out)
	}
	if c := sa.Children(); len(c) != 1 || c[0] != child || reg.len() != 2 {
		t.Fatalf("espy's Child SA after the IKE rekey: %d, %d registered", len(c), reg.len())
	}
	// The retired keys go with charon's Delete of the old IKE SA.
	waitFor(t, func() bool {
		e.mu.Lock()
		defer e.mu.Unlock()
		return len(e.sas) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sa.Ping(ctx); err != nil {
		t.Fatalf("liveness check on the rekeyed IKE SA: %v", err)
	}
	// espy rekeys the IKE SA in turn and becomes the new SA's initiator.
	prevI, _ := sa.SPIs()
	if err := sa.RekeyIKE(ctx); err != nil {
		t.Fatal(err)
	}
	newI, newR = sa.SPIs()
	l.waitSAs(t, "espy's new IKE SPIs and the old ones gone", func(out string) bool {
		return strings.Contains(out, fmt.Sprintf("%016x_i %016x_r*", newI, newR)) && !strings.Contains(out, fmt.Sprintf("%016x_i", prevI))
	})
	if err := sa.Ping(ctx); err != nil {
		t.Fatalf("liveness check after espy's IKE rekey: %v", err)
	}
	// A Child SA rekey on the new IKE SA (KEYMAT from the new SK_d).
	nc, err := sa.RekeyChild(ctx, child)
	if err != nil {
		t.Fatal(err)
	}
	ck := charonChildKeys(t, l, nc.OutSPI, nc.InSPI)
	if !bytes.Equal(ck["integrity initiator"], nc.Keys.IntegI) || !bytes.Equal(ck["integrity responder"], nc.Keys.IntegR) {
		t.Fatalf("Child SA keys after the IKE rekey differ from charon's: %x / %x", ck, *nc.Keys)
	}
	l.Swanctl(t, "--terminate", "--ike", "toespy", "--timeout", "10")
	waitFor(t, func() bool { return reg.len() == 0 && len(e.IKESAs()) == 0 })
}
