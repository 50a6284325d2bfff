package main

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The lab below follows ike/interop_test.go (two network namespaces, a
// veth pair on 192.0.2.0/24, charon 5.9.8 with kernel-libipsec and a
// private /run), reduced to one connection from charon to espy.

const (
	charonBin = "/usr/lib/ipsec/charon"
	charonPSK = "sswlab-test-psk-not-a-secret"
)

type charonLab struct {
	nsEspy, nsCharon, dir, uri, conf string
	devEspy                          string // espy's end of the veth pair
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func newCharonLab(t *testing.T) *charonLab {
	if os.Geteuid() != 0 {
		t.Skip("interop test needs root (network namespaces, charon)")
	}
	for _, bin := range []string{charonBin, "swanctl", "ip", "ping"} {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("interop test needs %s (Debian: strongswan-charon strongswan-swanctl libcharon-extra-plugins libstrongswan-extra-plugins iproute2 iputils-ping): %v", bin, err)
		}
	}
	suffix := make([]byte, 3)
	rand.Read(suffix)
	tag := hex.EncodeToString(suffix)
	l := &charonLab{nsEspy: "espy-run-a-" + tag, nsCharon: "espy-run-b-" + tag, dir: t.TempDir()}
	if out, err := exec.Command("ip", "netns", "add", l.nsEspy).CombinedOutput(); err != nil {
		t.Skipf("interop test needs network namespaces: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsEspy).Run() })
	mustRun(t, "ip", "netns", "add", l.nsCharon)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", l.nsCharon).Run() })
	va, vb := "erna"+tag, "ernb"+tag
	l.devEspy = va
	mustRun(t, "ip", "link", "add", va, "netns", l.nsEspy, "type", "veth", "peer", "name", vb, "netns", l.nsCharon)
	for _, c := range []struct{ ns, dev, addr string }{{l.nsEspy, va, "192.0.2.1/24"}, {l.nsCharon, vb, "192.0.2.2/24"}} {
		mustRun(t, "ip", "-n", c.ns, "addr", "add", c.addr, "dev", c.dev)
		mustRun(t, "ip", "-n", c.ns, "link", "set", c.dev, "up")
		mustRun(t, "ip", "-n", c.ns, "link", "set", "lo", "up")
	}
	mustRun(t, "ip", "-n", l.nsCharon, "addr", "add", "203.0.113.1/32", "dev", "lo")
	mustRun(t, "ip", "-n", l.nsCharon, "route", "add", "198.51.100.0/24", "via", "192.0.2.1")
	l.uri = "unix://" + filepath.Join(l.dir, "charon.vici")
	return l
}

const runStrongswanConf = `charon {
  load_modular = no
  load = random nonce openssl pem pkcs1 pkcs8 x509 revocation constraints pubkey curve25519 aes sha1 sha2 hmac xcbc cmac gcm ctr chapoly kdf kernel-libipsec kernel-netlink socket-default vici updown
  retransmit_timeout = 1.0
  retransmit_tries = 2
  plugins {
    vici {
      socket = unix://%[1]s/charon.vici
    }
  }
  filelog {
    log {
      path = %[1]s/charon.log
      flush_line = yes
      default = 1
      ike = 2
    }
  }
}
`

const runSwanctlConf = `connections {
  toespy {
    version = 2
    local_addrs = 192.0.2.2
    remote_addrs = 192.0.2.1
    proposals = aes128gcm16-prfsha256-x25519
    local {
      auth = psk
      id = b.lab.example
    }
    remote {
      auth = psk
      id = a.lab.example
    }
    children {
      tonet {
        local_ts = 203.0.113.0/24
        remote_ts = 198.51.100.0/24
        esp_proposals = null-sha256
      }
    }
  }
}
secrets {
  ike-lab {
    id-a = a.lab.example
    id-b = b.lab.example
    secret = "` + charonPSK + `"
  }
}
`

func (l *charonLab) startCharon(t *testing.T) {
	t.Helper()
	piddir := filepath.Join(l.dir, "run")
	if err := os.MkdirAll(piddir, 0o755); err != nil {
		t.Fatal(err)
	}
	sconf := filepath.Join(l.dir, "strongswan.conf")
	l.conf = filepath.Join(l.dir, "swanctl.conf")
	if err := os.WriteFile(sconf, fmt.Appendf(nil, runStrongswanConf, l.dir), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(l.conf, []byte(runSwanctlConf), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.nsCharon, "sh", "-c", "mount --bind "+piddir+" /run && exec "+charonBin)
	cmd.Env = append(os.Environ(), "STRONGSWAN_CONF="+sconf)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			log, _ := os.ReadFile(filepath.Join(l.dir, "charon.log"))
			t.Logf("charon output:\n%s\ncharon log:\n%s", out.String(), log)
		}
	})
	sock := filepath.Join(l.dir, "charon.vici")
	for i := 0; ; i++ {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-done:
			t.Fatalf("charon exited: %s", out.String())
		default:
		}
		if i > 200 {
			t.Fatal("charon's vici socket did not appear in 10 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	mustRun(t, "swanctl", "--load-all", "--file", l.conf, "--uri", l.uri)
}

// TestRunIKEInteropCharon: charon initiates to "espy run" (XDP on espy's
// end of the veth, IKE responder from YAML); espy ike status lists what
// swanctl --list-sas lists, and counts the ESP-NULL packets of a ping
// through the tunnel with the fast path's counters, which proves the Child
// SA reached the inline registrar; espy ike terminate deletes it at charon
// too.
func TestRunIKEInteropCharon(t *testing.T) {
	l := newCharonLab(t)
	bin := buildEspy(t)
	sock := filepath.Join(l.dir, "espy.sock")
	cfg := filepath.Join(l.dir, "espy.yaml")
	psk := filepath.Join(l.dir, "espy.psk")
	if err := os.WriteFile(psk, []byte(charonPSK+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// "ip netns exec" mounts a fresh /sys without the host's bpffs: pin on
	// a bpffs of the test's own.
	bpffs := filepath.Join(l.dir, "bpffs")
	os.Mkdir(bpffs, 0o700)
	mustRun(t, "mount", "-t", "bpf", "bpf", bpffs)
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
`, l.devEspy, bpffs, l.dir, sock, psk), 0o600); err != nil {
		t.Fatal(err)
	}
	// "ip netns exec" execs the command, so the signal reaches espy.
	p := startEspyProc(t, exec.Command("ip", "netns", "exec", l.nsEspy, bin, "run", "--config", cfg))
	p.listening(t)
	l.startCharon(t)
	mustRun(t, "swanctl", "--initiate", "--child", "tonet", "--timeout", "20", "--uri", l.uri)

	st := waitTunnel(t, bin, sock, "established")
	sa := st.IKESAs[0]
	if len(sa.ChildSAs) != 1 {
		t.Fatalf("espy lists %+v", st)
	}
	c := sa.ChildSAs[0]
	list := mustRun(t, "swanctl", "--list-sas", "--uri", l.uri)
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
	exec.Command("ip", "netns", "exec", l.nsCharon, "ping", "-c", "3", "-i", "0.2", "-W", "1", "-I", "203.0.113.1", "198.51.100.1").Run()
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
	for strings.Contains(mustRun(t, "swanctl", "--list-sas", "--uri", l.uri), "ESTABLISHED") {
		if time.Now().After(deadline) {
			t.Fatal("charon still lists the IKE SA espy deleted")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if code := p.stop(t); code != 0 {
		t.Errorf("espy run exited %d", code)
	}
}
