package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/espy-dpi/espy/internal/charonlab"
)

// The lab is internal/charonlab's (two network namespaces, a veth pair on
// 192.0.2.0/24, charon 5.9.8 with kernel-libipsec and a private /run),
// with one connection from charon to espy.

var runSwanctlConf = charonlab.SwanctlConf([]string{"a.lab.example", "b.lab.example"},
	charonlab.Conn{Name: "toespy", Proposals: "aes128gcm16-prfsha256-x25519", Children: []charonlab.Child{
		{Name: "tonet", LocalTS: "203.0.113.0/24", RemoteTS: "198.51.100.0/24", ESP: "null-sha256"},
	}}.String())

// TestRunIKEInteropCharon: charon initiates to "espy run" (XDP on espy's
// end of the veth, IKE responder from YAML); espy ike status lists what
// swanctl --list-sas lists, and counts the ESP-NULL packets of a ping
// through the tunnel with the fast path's counters, which proves the Child
// SA reached the inline registrar; espy ike terminate deletes it at charon
// too.
func TestRunIKEInteropCharon(t *testing.T) {
	l := charonlab.New(t, charonlab.Options{Name: "run", Dev: "ern", Charon: true, Needs: []string{"ping"}})
	l.CharonInner(t, "203.0.113.1/32")
	bin := buildEspy(t)
	sock := filepath.Join(l.Dir, "espy.sock")
	cfg := filepath.Join(l.Dir, "espy.yaml")
	psk := filepath.Join(l.Dir, "espy.psk")
	if err := os.WriteFile(psk, []byte(charonlab.PSK+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// "ip netns exec" mounts a fresh /sys without the host's bpffs: pin on
	// a bpffs of the test's own.
	bpffs := filepath.Join(l.Dir, "bpffs")
	os.Mkdir(bpffs, 0o700)
	charonlab.Run(t, "mount", "-t", "bpf", "bpf", bpffs)
	t.Cleanup(func() { exec.Command("umount", "-l", bpffs).Run() })
	if err := os.WriteFile(cfg, fmt.Appendf(nil, `interfaces: [%s]
attach: generic
pin_path: %s/espy
flows: {sweep_interval: 1s}
log: {path: %s/verdicts.jsonl}
ike:
  listen: [192.0.2.1]
  socket: %s
tunnels:
  - name: charon
    local_addr: 192.0.2.1
    local_id: a.lab.example
    remote_id: b.lab.example
    auth: {psk_file: %s}
    ike: [aes128gcm16-prfsha256-x25519]
    esp: [null-sha256]
    local_ts: [198.51.100.0/24]
    remote_ts: [203.0.113.0/24]
`, l.DevA, bpffs, l.Dir, sock, psk), 0o600); err != nil {
		t.Fatal(err)
	}
	// "ip netns exec" execs the command, so the signal reaches espy.
	p := startEspyProc(t, exec.Command("ip", "netns", "exec", l.A, bin, "run", "--config", cfg))
	p.listening(t)
	l.StartCharon(t, charonlab.Charon{Swanctl: runSwanctlConf})
	l.Swanctl(t, "--initiate", "--child", "tonet", "--timeout", "20")

	st := waitTunnel(t, bin, sock, "established")
	sa := st.IKESAs[0]
	if len(sa.ChildSAs) != 1 {
		t.Fatalf("espy lists %+v", st)
	}
	c := sa.ChildSAs[0]
	list := l.ListSAs(t)
	for _, want := range []string{
		"ESTABLISHED", fmt.Sprintf("%s_i* %s_r", sa.SPIi, sa.SPIr), "AES_GCM_16-128/PRF_HMAC_SHA2_256/CURVE_25519",
		"INSTALLED", "ESP:NULL/HMAC_SHA2_256_128", fmt.Sprintf("in  %s", c.SPIOut), fmt.Sprintf("out %s", c.SPIIn),
	} {
		if !strings.Contains(list, want) {
			t.Errorf("swanctl --list-sas lacks %q:\n%s", want, list)
		}
	}
	// charon's kernel-libipsec fakes a NAT: IKE and ESP moved to UDP 4500.
	if sa.Initiator || sa.PeerID != "b.lab.example" || !sa.NATT || c.Encap != "udp" || !c.Null ||
		c.LocalTS[0] != "198.51.100.0/24" || c.RemoteTS[0] != "203.0.113.0/24" {
		t.Errorf("espy's view: %+v", sa)
	}

	// No ESP data plane at espy: the pings go unanswered, but the fast
	// path counts their ESP-in-UDP packets under the registered SA.
	exec.Command("ip", "netns", "exec", l.B, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "203.0.113.1", "198.51.100.1").Run()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := waitTunnel(t, bin, sock, "established")
		c := st.IKESAs[0].ChildSAs[0]
		if c.PacketsIn != nil && *c.PacketsIn >= 3 && c.BytesIn != nil && *c.BytesIn > 3*84 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no inbound counters for the Child SA: %+v", c)
		}
		time.Sleep(200 * time.Millisecond)
	}

	if code, out, errOut := espyCmd(t, bin, "ike", "terminate", "--socket", sock, "charon"); code != 0 {
		t.Fatalf("espy ike terminate: exit %d\n%s%s", code, out, errOut)
	}
	deadline = time.Now().Add(10 * time.Second)
	for strings.Contains(l.ListSAs(t), "ESTABLISHED") {
		if time.Now().After(deadline) {
			t.Fatal("charon still lists the IKE SA espy deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("espy run exited %d", code)
	}
}
