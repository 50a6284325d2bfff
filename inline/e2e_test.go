package inline_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espy-dpi/espy/capture"
	"github.com/espy-dpi/espy/packet"
)

// The end-to-end test builds host A — veth — espy (two veths, XDP bridge on
// both) — veth — host B in network namespaces of its own, replays
// testdata/sample.pcap from A with tcpreplay, captures at B with tcpdump,
// and runs the real espy binary in between.

const (
	sampleCapture = "../testdata/sample.pcap"
	sampleLabels  = "../testdata/sample.labels.jsonl"
	// A null tunnel-mode flow of the sample: its inner TCP 5-tuple gets a
	// drop rule.
	dropSPI   = 2236517083
	dropRule  = "{proto: tcp, src: 198.51.100.144, dst: 192.0.2.55, sport: 47011, dport: 80, action: drop}"
	dropTotal = 57
	// A null transport-mode flow of mixed traffic whose 7 DNS packets (UDP
	// to port 53) the SPD in the policy section drops (a prefix and port
	// rule, compiled into the fast path); its TCP, ICMP and other UDP pass.
	spdDropSPI   = 3962708999
	spdDropTotal = 21
	spdDropDNS   = 7
)

func need(t *testing.T, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: network namespaces, XDP and BPF maps")
	}
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s (Debian packages iproute2, tcpreplay, tcpdump, ethtool)", tool)
		}
	}
	if _, err := os.Stat("/sys/fs/bpf"); err != nil {
		t.Skip("needs a bpffs at /sys/fs/bpf")
	}
}

func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// topology creates the three namespaces and their links; t.Cleanup deletes
// them (and with them the veths).
func topology(t *testing.T) (nsA, nsE, nsB string) {
	t.Helper()
	suffix := fmt.Sprintf("%d", os.Getpid()%100000)
	nsA, nsE, nsB = "espyA"+suffix, "espyE"+suffix, "espyB"+suffix
	for _, ns := range []string{nsA, nsE, nsB} {
		ns := ns
		sh(t, "ip", "netns", "add", ns)
		t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		sh(t, "ip", "-n", ns, "link", "set", "lo", "up")
	}
	sh(t, "ip", "link", "add", "a0", "netns", nsA, "type", "veth", "peer", "name", "e0", "netns", nsE)
	sh(t, "ip", "link", "add", "b0", "netns", nsB, "type", "veth", "peer", "name", "e1", "netns", nsE)
	for _, l := range [][2]string{{nsA, "a0"}, {nsE, "e0"}, {nsE, "e1"}, {nsB, "b0"}} {
		sh(t, "ip", "-n", l[0], "link", "set", l[1], "up")
	}
	// Addresses from the documentation ranges; the replayed frames carry
	// their own, which are also documentation addresses.
	sh(t, "ip", "-n", nsA, "addr", "add", "192.0.2.201/24", "dev", "a0")
	sh(t, "ip", "-n", nsB, "addr", "add", "192.0.2.202/24", "dev", "b0")
	// Frames redirected by native XDP into a veth are received by its
	// peer only when the peer runs NAPI, which GRO turns on (as a pass
	// XDP program would). Physical NICs need nothing of the kind.
	sh(t, "ip", "netns", "exec", nsB, "ethtool", "-K", "b0", "gro", "on")
	sh(t, "ip", "netns", "exec", nsA, "ethtool", "-K", "a0", "gro", "on")
	return nsA, nsE, nsB
}

func buildEspy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "espy")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/espy").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v: %s", err, out)
	}
	return bin
}

type espyProc struct {
	cmd    *exec.Cmd
	stderr *lockedBuffer
	log    string
}

// lockedBuffer is a bytes.Buffer that the child's stderr copier writes
// while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func startEspy(t *testing.T, bin, ns, cfgFile, logFile string) *espyProc {
	t.Helper()
	p := &espyProc{stderr: new(lockedBuffer), log: logFile}
	p.cmd = exec.Command("ip", "netns", "exec", ns, bin, "run", "--config", cfgFile, "--log", logFile)
	p.cmd.Stderr = p.stderr
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.cmd.Process.Kill(); p.cmd.Wait() })
	// Ready when the diagnostics say so.
	deadline := time.Now().Add(20 * time.Second)
	for !strings.Contains(p.stderr.String(), "espy running") {
		if time.Now().After(deadline) || p.cmd.ProcessState != nil {
			t.Fatalf("espy did not start: %s", p.stderr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

func (p *espyProc) stop(t *testing.T) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- p.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("espy exited with %v: %s", err, p.stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("espy did not stop on SIGTERM: %s", p.stderr.String())
	}
}

// records reads the verdict log.
func records(t *testing.T, name string) []map[string]any {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("verdict log line %q: %v", sc.Text(), err)
		}
		out = append(out, m)
	}
	return out
}

// espCounts counts ESP packets per SPI in a capture.
func espCounts(t *testing.T, name string) (map[uint32]int, int) {
	t.Helper()
	f, err := os.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := capture.NewReader(name, f)
	if err != nil {
		t.Fatal(err)
	}
	var d packet.Decoder
	var p packet.Packet
	counts := map[uint32]int{}
	total := 0
	for {
		pk, err := r.Next()
		if errors.Is(err, io.EOF) {
			return counts, total
		}
		if err != nil {
			// tcpdump killed mid-write may leave a partial record.
			if errors.Is(err, capture.ErrTruncated) {
				return counts, total
			}
			t.Fatal(err)
		}
		total++
		if d.Decode(packet.LinkType(pk.LinkType), pk.Data, &p) == nil && p.Kind == packet.KindESP {
			counts[p.SPI()]++
		}
	}
}

// waitQuiet waits until a capture file has not grown for half a second (at
// most 15 s), so that tcpdump has written every frame before it is stopped.
func waitQuiet(name string) {
	last := int64(-1)
	for deadline := time.Now().Add(15 * time.Second); time.Now().Before(deadline); {
		time.Sleep(500 * time.Millisecond)
		st, err := os.Stat(name)
		if err != nil {
			continue
		}
		if st.Size() == last {
			return
		}
		last = st.Size()
	}
}

func TestBridgeEndToEnd(t *testing.T) {
	need(t, "ip", "tcpreplay", "tcpdump", "ethtool")
	nsA, nsE, nsB := topology(t)
	bin := buildEspy(t)
	dir := t.TempDir()
	// "ip netns exec" mounts a fresh /sys, without the host's bpffs: pin
	// on a bpffs of the test's own, which the namespaces inherit.
	bpffs := filepath.Join(dir, "bpffs")
	os.Mkdir(bpffs, 0o700)
	sh(t, "mount", "-t", "bpf", "bpf", bpffs)
	t.Cleanup(func() { exec.Command("umount", "-l", bpffs).Run() })
	pin := filepath.Join(bpffs, "espy")
	cfg := filepath.Join(dir, "espy.yaml")
	os.WriteFile(cfg, []byte(fmt.Sprintf(`interfaces: [e0, e1]
pin_path: %s
attach: driver
sampling: {rate: 100000, burst: 4096}
inner_rules:
  - %s
policy:
  rules:
    - name: no-dns-to-208
      src: any
      dst: 198.51.100.208
      protocol: udp
      dst_port: 53
      action: drop
    - name: rest
      src: any
      dst: any
      action: allow
`, pin, dropRule)), 0o644)

	// Capture at B.
	atB := filepath.Join(dir, "b.pcap")
	dump := exec.Command("ip", "netns", "exec", nsB, "tcpdump", "-i", "b0", "-n", "-U", "--immediate-mode", "-w", atB)
	var dumpErr lockedBuffer
	dump.Stderr = &dumpErr
	if err := dump.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dump.Process.Kill(); dump.Wait() })

	log1 := filepath.Join(dir, "verdicts1.jsonl")
	e := startEspy(t, bin, nsE, cfg, log1)
	for deadline := time.Now().Add(20 * time.Second); !strings.Contains(dumpErr.String(), "listening"); {
		if time.Now().After(deadline) {
			t.Fatalf("tcpdump at B did not start: %s", dumpErr.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	// 500 frames/s: a veth's XDP redirect ring holds 256 frames, and on a
	// loaded machine its NAPI poll can be late by more than 128 ms, which
	// at 2,000 frames/s lost frames that espy had forwarded.
	sh(t, "ip", "netns", "exec", nsA, "tcpreplay", "-q", "--pps", "500", "-i", "a0", sampleCapture)
	waitQuiet(atB)
	dump.Process.Signal(syscall.SIGINT)
	dump.Wait()
	e.stop(t)

	// Forwarding: every frame but the dropped flow's reached B.
	sent, sentTotal := espCounts(t, sampleCapture)
	got, gotTotal := espCounts(t, atB)
	if got[dropSPI] >= sent[dropSPI]/2 || sent[dropSPI] != dropTotal {
		t.Errorf("dropped flow: %d of %d packets reached B, want only those before its verdict", got[dropSPI], sent[dropSPI])
	}
	if n := got[spdDropSPI]; sent[spdDropSPI] != spdDropTotal || n < spdDropTotal-spdDropDNS || n > spdDropTotal-spdDropDNS+2 {
		t.Errorf("flow partly dropped by the SPD: %d of %d packets reached B, want all but its %d DNS packets (those before the verdict, at most 2, may pass)",
			n, sent[spdDropSPI], spdDropDNS)
	}
	lost := false
	for spi, n := range sent {
		if spi != dropSPI && spi != spdDropSPI && got[spi] != n {
			t.Errorf("flow spi %#x: %d of %d packets reached B", spi, got[spi], n)
			lost = true
		}
	}
	if lost {
		// Say where frames went missing: the veths' own drop counters.
		for _, l := range [][2]string{{nsE, "e0"}, {nsE, "e1"}, {nsB, "b0"}} {
			out, _ := exec.Command("ip", "netns", "exec", l[0], "ip", "-s", "-s", "link", "show", l[1]).CombinedOutput()
			t.Logf("%s/%s:\n%s", l[0], l[1], out)
		}
	}
	t.Logf("B received %d frames (%d sent); dropped by an exact rule: %d of %d; by the SPD: %d of %d",
		gotTotal, sentTotal, got[dropSPI], sent[dropSPI], got[spdDropSPI], sent[spdDropSPI])

	// Verdicts: score the appliance's log against the labels the way
	// replay is scored.
	type lbl struct {
		Src, Dst string
		SPI      uint32
		Verdict  string
		ICVLen   int `json:"icv_len"`
		IVLen    int `json:"iv_len"`
	}
	verdict := map[uint32]map[string]any{}
	for _, r := range records(t, log1) {
		esp := r["esp"].(map[string]any)
		if r["event"].(map[string]any)["action"] == "esp-verdict" {
			verdict[uint32(esp["spi"].(float64))] = esp
		}
	}
	lf, _ := os.ReadFile(sampleLabels)
	var nulls, found int
	for _, line := range strings.Split(strings.TrimSpace(string(lf)), "\n") {
		var l lbl
		json.Unmarshal([]byte(line), &l)
		v := verdict[l.SPI]
		switch l.Verdict {
		case "null":
			nulls++
			if v == nil || v["verdict"] != "null" || int(v["icv_len"].(float64)) != l.ICVLen || int(v["iv_len"].(float64)) != l.IVLen {
				t.Errorf("null flow spi %#x: appliance verdict %v", l.SPI, v)
				continue
			}
			found++
		case "encrypted":
			if v != nil && v["verdict"] == "null" {
				t.Errorf("encrypted flow spi %#x called null", l.SPI)
			}
		}
	}
	t.Logf("appliance found %d of %d null flows", found, nulls)

	// A restart keeps the pinned verdicts: replaying again yields no new
	// verdict for the flows decided before.
	log2 := filepath.Join(dir, "verdicts2.jsonl")
	e2 := startEspy(t, bin, nsE, cfg, log2)
	sh(t, "ip", "netns", "exec", nsA, "tcpreplay", "-q", "--pps", "2000", "-i", "a0", sampleCapture)
	time.Sleep(300 * time.Millisecond)
	e2.stop(t)
	var again int
	for _, r := range records(t, log2) {
		if r["event"].(map[string]any)["action"] == "esp-verdict" {
			spi := uint32(r["esp"].(map[string]any)["spi"].(float64))
			if verdict[spi] != nil {
				again++
			}
		}
	}
	if again != 0 {
		t.Errorf("%d flows decided before the restart were decided again: pinned verdicts lost", again)
	}
}
