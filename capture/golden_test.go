package capture

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden captures and listings in testdata/")

// goldenCaptures are the tiny captures kept in testdata/, built here so that
// a change to the builder or the reader shows up as a diff.
func goldenCaptures() map[string][]byte {
	ng, _ := twoInterfaces(be)
	w := &ngBuilder{o: le}
	w.shb().idb(LinkTypeIPv6, 0, w.opt(optTSResol, []byte{9})).epb(0, 1700000100_000000042, frame(48, 9), 0)
	return map[string][]byte{
		"two_sections.pcapng": append(ng, w.b...),
		"nano_be.pcap": buildPcap(be, 0xa1b23c4d, 262144, uint32(LinkTypeLinuxSLL),
			pcapRec{sec: 1700000000, frac: 1, data: frame(44, 1)},
			pcapRec{sec: 1700000000, frac: 999999999, data: frame(96, 2), origlen: 1500}),
	}
}

// listing is one line per packet, the form of the golden files and of the
// comparison with tshark.
func listing(t *testing.T, name string, file []byte) string {
	t.Helper()
	r, err := NewReader(name, bytes.NewReader(file))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for {
		p, err := r.Next()
		if err == io.EOF {
			return b.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		ts := "none" // a simple packet block has no timestamp
		if !p.Timestamp.IsZero() {
			ts = fmt.Sprintf("%d.%09d", p.Timestamp.Unix(), p.Timestamp.Nanosecond())
		}
		fmt.Fprintf(&b, "%s %d %d link=%d offset=%d sha256=%x\n", ts,
			p.CaptureLength, p.Length, p.LinkType, r.Offset(), sha256.Sum256(p.Data))
	}
}

func TestGolden(t *testing.T) {
	for name, built := range goldenCaptures() {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join("testdata", name)
			if *update {
				if err := os.WriteFile(path, built, 0o644); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path+".golden", []byte(listing(t, name, built)), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			file, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(file, built) {
				t.Errorf("%s differs from what the builder makes; run go test -update and review", path)
			}
			want, err := os.ReadFile(path + ".golden")
			if err != nil {
				t.Fatal(err)
			}
			if got := listing(t, name, file); got != string(want) {
				t.Errorf("listing of %s:\n%s\nwant:\n%s", path, got, want)
			}
		})
	}
}

// TestGoldenTshark checks the golden captures against an independent
// reader: the timestamps and lengths tshark sees must be ours.
func TestGoldenTshark(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed; golden captures not cross-checked")
	}
	for name := range goldenCaptures() {
		path := filepath.Join("testdata", name)
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-e", "frame.time_epoch", "-e", "frame.cap_len", "-e", "frame.len").Output()
		if err != nil {
			t.Fatalf("tshark -r %s: %v", path, err)
		}
		file, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var ours []string
		for _, l := range strings.Split(strings.TrimSpace(listing(t, name, file)), "\n") {
			f := strings.Fields(l)
			if f[0] == "none" {
				f[0] = ""
			}
			ours = append(ours, strings.Join(f[:3], "\t"))
		}
		if got, want := strings.TrimSpace(string(out)), strings.Join(ours, "\n"); got != want {
			t.Errorf("%s: tshark reads\n%s\nwe read\n%s", path, got, want)
		}
	}
}
