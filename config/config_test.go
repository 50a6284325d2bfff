package config

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"
)

func TestExample(t *testing.T) {
	c, err := Load("../docs/espy.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Mode() != "bridge" || c.Sampling.Packets != 4 || time.Duration(c.Flows.IdleTimeout) != 10*time.Minute {
		t.Errorf("example parsed as %+v", c)
	}
	sa, err := c.KnownSA(0)
	if err != nil || !sa.Null || sa.ICV != 16 || sa.SPI != 0xc001 {
		t.Errorf("known SA 0: %+v %v", sa, err)
	}
	r, err := c.InnerRule(1)
	if err != nil || r.Proto != 17 || r.DstPort != 53 || r.Action != "count" || !r.Src.Is6() {
		t.Errorf("inner rule 1: %+v %v", r, err)
	}
}

func TestEmptyIsValid(t *testing.T) {
	c, err := Parse("empty.yaml", nil)
	if err != nil || c.Mode() != "monitor" {
		t.Fatalf("empty file: %v", err)
	}
}

func TestBadConfig(t *testing.T) {
	tests := []struct {
		name, yaml, want string
	}{
		{"unknown key", "interfaces: [eth0]\nsamplng:\n  packets: 4\n", "bad.yaml:2: field samplng not found"},
		{"not a mapping", "- eth0\n", "bad.yaml:1: the file must be a mapping"},
		{"syntax", "interfaces: [eth0\n", "bad.yaml:"},
		{"three interfaces", "interfaces: [a, b, c]\n", "bad.yaml:1: at most two interfaces"},
		{"bad interface", "interfaces:\n  - eth0\n  - 'bad name'\n", "bad.yaml:3: invalid interface name"},
		{"fail mode", "fail: sometimes\n", "bad.yaml:1: fail must be one of open, closed"},
		{"action", "actions:\n  encrypted: reject\n", "bad.yaml:2: actions.encrypted must be one of pass, drop, count"},
		{"wrong type", "sampling:\n  packets: many\n", "bad.yaml:2: cannot unmarshal"},
		{"samples", "sampling:\n  packets: 300\n", "bad.yaml:2: at most 255 samples"},
		{"snaplen", "sampling:\n  snaplen: 64\n", "bad.yaml:2: snaplen must be between"},
		{"negative size", "maps:\n  verdicts: -1\n", "bad.yaml:2: -1 is out of range"},
		{"duration", "flows:\n  idle_timeout: soon\n", "bad.yaml:2: invalid duration"},
		{"metrics", "metrics:\n  listen: localhost\n", "bad.yaml:2: metrics.listen must be ADDRESS:PORT"},
		{"sa address", "known_sas:\n  - src: 192.0.2.300\n    dst: 192.0.2.2\n    spi: 300\n    encryption: null\n", "bad.yaml:2: invalid address"},
		{"sa spi", "known_sas:\n  - {src: 192.0.2.1, dst: 192.0.2.2, spi: 7, encryption: null}\n", "bad.yaml:2: invalid SPI"},
		{"sa icv", "known_sas:\n  - src: 192.0.2.1\n    dst: 192.0.2.2\n    spi: 0x1000\n    encryption: null\n    icv: 13\n", "bad.yaml:6: ICV length 13"},
		{"sa mixed families", "known_sas:\n  - {src: 192.0.2.1, dst: '2001:db8::1', spi: 4096, encryption: encrypted}\n", "bad.yaml:2: src and dst are of different IP versions"},
		{"rule proto", "inner_rules:\n  - {proto: tcpp, src: 192.0.2.1, dst: 192.0.2.2, action: drop}\n", "bad.yaml:2: unknown protocol"},
		{"rule ports", "inner_rules:\n  - {proto: icmp, src: 192.0.2.1, dst: 192.0.2.2, sport: 1, action: drop}\n", "bad.yaml:2: protocol icmp has no ports"},
		{"rule port range", "inner_rules:\n  - proto: tcp\n    src: 192.0.2.1\n    dst: 192.0.2.2\n    dport: 70000\n    action: drop\n", "bad.yaml:5: port 70000 out of range"},
		{"rule action", "inner_rules:\n  - {proto: tcp, src: 192.0.2.1, dst: 192.0.2.2, action: reject}\n", "bad.yaml:2: action must be allow, drop or count"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("bad.yaml", []byte(tt.yaml))
			if err == nil {
				t.Fatalf("accepted:\n%s", tt.yaml)
			}
			var ce *Error
			if !errors.As(err, &ce) || !errors.Is(err, ErrInvalid) {
				t.Errorf("error %T is not a *config.Error wrapping ErrInvalid", err)
			}
			if !strings.Contains(err.Error(), tt.want) || strings.Contains(err.Error(), "\n") {
				t.Errorf("error %q: want one line containing %q", err, tt.want)
			}
		})
	}
}

func TestTooLarge(t *testing.T) {
	if _, err := Parse("big.yaml", make([]byte, maxFileSize+1)); err == nil {
		t.Fatal("accepted a file over the size limit")
	}
}

func FuzzParse(f *testing.F) {
	ex, _ := os.ReadFile("../docs/espy.example.yaml")
	f.Add(ex)
	f.Add([]byte("interfaces: [eth0]\n"))
	f.Add([]byte("a: &a [*a, *a]\n"))
	f.Add([]byte("known_sas:\n  - {src: 192.0.2.1, dst: 192.0.2.2, spi: 0x1000, encryption: null, icv: 12}\n"))
	f.Add([]byte(tunnelYAML))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := Parse("fuzz.yaml", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("multi-line error %q", err)
			}
			return
		}
		for i := range c.KnownSAs {
			if _, err := c.KnownSA(i); err != nil {
				t.Errorf("validated file has a bad SA: %v", err)
			}
		}
		if _, err := c.IKESpec(); err != nil {
			t.Errorf("validated file has a bad ike: section: %v", err)
		}
		for i := range c.Tunnels {
			if _, err := c.Tunnel(i); err != nil {
				t.Errorf("validated file has a bad tunnel: %v", err)
			}
		}
	})
}
