package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/espy-dpi/espy/ike/ikeservice"
)

// built is the espy binary the tests run, compiled once per test process
// into a directory TestMain removes.
var built struct {
	once     sync.Once
	dir, bin string
	err      error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if built.dir != "" {
		os.RemoveAll(built.dir)
	}
	os.Exit(code)
}

// buildEspy compiles the espy binary (once) and returns its path.
func buildEspy(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go tool is not in PATH; cannot build the espy binary")
	}
	built.once.Do(func() {
		if built.dir, built.err = os.MkdirTemp("", "espy-bin-"); built.err != nil {
			return
		}
		built.bin = filepath.Join(built.dir, "espy")
		if out, err := exec.Command("go", "build", "-o", built.bin, ".").CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

// espyProc is a running "espy run".
type espyProc struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stderr bytes.Buffer
	ikeAt  chan string // the IKE address from the "IKE listening" line
	done   chan error
}

func startEspyRun(t *testing.T, bin string, args ...string) *espyProc {
	t.Helper()
	return startEspyProc(t, exec.Command(bin, append([]string{"run"}, args...)...))
}

// startEspyProc starts cmd, an "espy run", and collects its stderr.
func startEspyProc(t *testing.T, cmd *exec.Cmd) *espyProc {
	t.Helper()
	p := &espyProc{cmd: cmd, ikeAt: make(chan string, 1), done: make(chan error, 1)}
	r, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(r)
		for sc.Scan() {
			line := sc.Text()
			p.mu.Lock()
			p.stderr.WriteString(line + "\n")
			p.mu.Unlock()
			var ev struct{ Message, IKE, NATT string }
			if json.Unmarshal([]byte(line), &ev) == nil && ev.Message == "IKE listening" {
				select {
				case p.ikeAt <- ev.IKE + " " + ev.NATT:
				default:
				}
			}
		}
		p.done <- p.cmd.Wait()
	}()
	t.Cleanup(func() {
		if p.cmd.ProcessState == nil {
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("%v stderr:\n%s", cmd.Args, p.log())
		}
	})
	return p
}

func (p *espyProc) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stderr.String()
}

// listening waits for the IKE and NAT-T ports.
func (p *espyProc) listening(t *testing.T) (ike, natt int) {
	t.Helper()
	select {
	case s := <-p.ikeAt:
		var a, b string
		fmt.Sscan(s, &a, &b)
		fmt.Sscan(a[strings.LastIndexByte(a, ':')+1:], &ike)
		fmt.Sscan(b[strings.LastIndexByte(b, ':')+1:], &natt)
		return ike, natt
	case err := <-p.done:
		t.Fatalf("espy run exited: %v\n%s", err, p.log())
	case <-time.After(20 * time.Second):
		t.Fatalf("espy run did not start listening:\n%s", p.log())
	}
	return 0, 0
}

// stop sends SIGTERM and returns the exit code.
func (p *espyProc) stop(t *testing.T) int {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("espy run did not stop on SIGTERM:\n%s", p.log())
	}
	return p.cmd.ProcessState.ExitCode()
}

// espyCmd runs a short espy command and returns its exit code and output.
func espyCmd(t *testing.T, bin string, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(bin, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("%v: %v", args, err)
	}
	return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
}

func runYAML(dir, name, peer, start string, remotePort, remoteNAT int) string {
	nets := map[string]string{"a": "198.51.100.0/24", "b": "203.0.113.0/24"}
	return fmt.Sprintf(`ike:
  listen: [127.0.0.1]
  port: 0
  nat_port: 0
  socket: %s/%s.sock
  retransmit: {timeout: 500ms, tries: 3}
tunnels:
  - name: lab
    local_addr: 127.0.0.1
    remote_addr: 127.0.0.1
    remote_port: %d
    remote_nat_port: %d
    local_id: %s.lab.example
    remote_id: %s.lab.example
    auth: {psk_env: ESPY_TEST_PSK}
    ike: [aes256-sha256-modp2048]
    esp: [null-sha256]
    local_ts: [%s]
    remote_ts: [%s]
    start_action: %s
`, dir, name, remotePort, remoteNAT, name, peer, nets[name], nets[peer], start)
}

// waitTunnel polls "espy ike status --json" until the tunnel is in state.
func waitTunnel(t *testing.T, bin, sock, state string) ikeservice.TunnelStatus {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		code, out, errOut := espyCmd(t, bin, "ike", "status", "--socket", sock, "--json")
		switch {
		case code == 3 && time.Now().Before(deadline):
			// The socket is not there yet: espy run is starting.
		case code != 0:
			t.Fatalf("espy ike status: exit %d: %s", code, errOut)
		default:
			var st ikeservice.Status
			if err := json.Unmarshal([]byte(out), &st); err != nil {
				t.Fatalf("status JSON: %v\n%s", err, out)
			}
			if len(st.Tunnels) == 1 && st.Tunnels[0].State == state {
				return st.Tunnels[0]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("tunnel not %s: %s", state, out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestRunIKEOnly runs two "espy run" processes with tunnels and no
// interfaces on loopback, A keeping the tunnel up and B answering, and
// drives them with "espy ike status | initiate | terminate".
func TestRunIKEOnly(t *testing.T) {
	bin := buildEspy(t)
	dir := t.TempDir()
	t.Setenv("ESPY_TEST_PSK", "e2e loopback key, not a secret")
	write := func(name, body string) string {
		f := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(f, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	b := startEspyRun(t, bin, "--config", write("b", runYAML(dir, "b", "a", "respond", 1, 1)))
	bIKE, bNAT := b.listening(t)
	a := startEspyRun(t, bin, "--config", write("a", runYAML(dir, "a", "b", "start", bIKE, bNAT)))
	aSock, bSock := filepath.Join(dir, "a.sock"), filepath.Join(dir, "b.sock")

	ta, tb := waitTunnel(t, bin, aSock, "established"), waitTunnel(t, bin, bSock, "established")
	if ta.IKESAs[0].SPIi != tb.IKESAs[0].SPIi || ta.IKESAs[0].DH != "modp2048" || len(tb.IKESAs[0].ChildSAs) != 1 || !tb.IKESAs[0].ChildSAs[0].Null {
		t.Errorf("status:\nA %+v\nB %+v", ta, tb)
	}
	if fi, err := os.Stat(aSock); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("control socket %v mode %v", err, fi.Mode())
	}
	code, out, _ := espyCmd(t, bin, "ike", "status", "--socket", bSock)
	if code != 0 || !strings.Contains(out, "lab") || !strings.Contains(out, "established") || !strings.Contains(out, "ESP-NULL") {
		t.Errorf("human status: exit %d\n%s", code, out)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"terminate", "--socket", aSock, "lab"}, 0, "down"},
		{[]string{"terminate", "--socket", aSock, "lab"}, 1, "no IKE SA"},
		{[]string{"initiate", "--socket", aSock, "nope"}, 1, `unknown tunnel "nope"`},
		{[]string{"status", "--socket", filepath.Join(dir, "missing.sock")}, 3, "no IKE service"},
		{[]string{"initiate", "--socket", aSock}, 2, ""}, // no name: the standalone initiator's usage
		{[]string{"terminate", "--socket", aSock}, 2, "want one tunnel NAME"},
	} {
		code, out, errOut := espyCmd(t, bin, append([]string{"ike"}, c.args...)...)
		if code != c.code || !strings.Contains(out+errOut, c.want) {
			t.Errorf("espy ike %v: exit %d, want %d with %q\n%s%s", c.args, code, c.code, c.want, out, errOut)
		}
		if c.args[0] == "terminate" && c.code == 0 {
			waitTunnel(t, bin, bSock, "down")
		}
	}
	code, out, errOut := espyCmd(t, bin, "ike", "initiate", "--socket", aSock, "lab")
	if code != 0 || !strings.Contains(out, "established") {
		t.Fatalf("initiate: exit %d\n%s%s", code, out, errOut)
	}
	waitTunnel(t, bin, bSock, "established")

	// SIGHUP is harmless; SIGTERM deletes the SA at the peer and removes
	// the socket.
	a.cmd.Process.Signal(syscall.SIGHUP)
	time.Sleep(100 * time.Millisecond)
	waitTunnel(t, bin, aSock, "established")
	if code := a.stop(t); code != 0 {
		t.Errorf("espy run A exited %d", code)
	}
	waitTunnel(t, bin, bSock, "down")
	if _, err := os.Stat(aSock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("control socket left behind: %v", err)
	}
	if code := b.stop(t); code != 0 {
		t.Errorf("espy run B exited %d", code)
	}
}
