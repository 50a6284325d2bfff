package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunWritesCaptureLabelsAndKeys(t *testing.T) {
	dir := t.TempDir()
	pcap, labels, keys := filepath.Join(dir, "a.pcap"), filepath.Join(dir, "a.jsonl"), filepath.Join(dir, "esp_sa")
	var stderr bytes.Buffer
	err := run([]string{"-seed", "3", "-flows", "25", "-packets", "4000", "-o", pcap, "-labels", labels, "-esp-sa", keys}, nil, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(stderr.String(), "4000 ESP packets in 25 flows") {
		t.Errorf("summary %q", stderr.String())
	}
	f, err := os.Open(labels)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n, sum := 0, 0
	for sc := bufio.NewScanner(f); sc.Scan(); n++ {
		var l struct {
			Pcap    string
			Packets int
		}
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil {
			t.Fatal(err)
		}
		if l.Pcap != "a.pcap" {
			t.Errorf("label names capture %q", l.Pcap)
		}
		sum += l.Packets
	}
	if n != 25 || sum != 4000 {
		t.Errorf("%d labels counting %d packets, want 25 and 4000", n, sum)
	}
	st, err := os.Stat(pcap)
	if err != nil || st.Size() < 24+4000*(16+60) {
		t.Errorf("capture: %v, %v", st, err)
	}
	if b, err := os.ReadFile(keys); err != nil || !bytes.HasPrefix(b, []byte(`"IPv`)) {
		t.Errorf("esp_sa table: %v %.40q", err, b)
	}
}

func TestRunErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{}, "-o is required"},
		{[]string{"-o", "x.pcap", "extra"}, "unexpected arguments"},
		{[]string{"-o", "x.pcap", "-flows", "10", "-packets", "5"}, "cannot fill"},
		{[]string{"-o", "/nonexistent/dir/x.pcap", "-flows", "1", "-packets", "1"}, "no such file"},
		{[]string{"-bogus"}, "not defined"},
	} {
		err := run(tc.args, nil, &bytes.Buffer{})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: error %v, want %q", tc.args, err, tc.want)
		}
	}
}
