package main

import (
	"bytes"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

const sample = "../../testdata/sample.pcap"

func runEspy(t *testing.T, stdin []byte, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, bytes.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func readSample(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile(sample)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// recordOffset returns the byte offset of classic-pcap record i (0-based).
func recordOffset(t *testing.T, b []byte, i int) int {
	t.Helper()
	off := 24
	for ; i > 0; i-- {
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	return off
}

func TestReplayBadInput(t *testing.T) {
	good := readSample(t)
	mid := recordOffset(t, good, 300)
	corrupt := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(corrupt[mid+8:], 0xffffffff)
	linktype := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(linktype[20:], 147) // LINKTYPE_USER0

	tests := []struct {
		name     string
		data     []byte
		wantErr  string // in the one stderr line
		verdicts bool   // verdicts before the fault are printed
	}{
		{"empty", nil, "offset 0: empty file", false},
		{"not a capture", []byte("hello, this is a text file\n"), "offset 0: not a pcap or pcapng file", false},
		{"truncated header", good[:10], "offset 0", false},
		{"truncated record", good[:mid+20], "offset " + itoa(mid), true},
		{"corrupt record length", corrupt, "offset " + itoa(mid), true},
		{"unknown link type", linktype, "unsupported link type 147", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			name := filepath.Join(t.TempDir(), "in.pcap")
			if err := os.WriteFile(name, tt.data, 0o644); err != nil {
				t.Fatal(err)
			}
			code, out, errs := runEspy(t, nil, "replay", "--format", "jsonl", name)
			if code != exitInput {
				t.Errorf("exit %d, want %d", code, exitInput)
			}
			lines := strings.Split(strings.TrimSpace(errs), "\n")
			if len(lines) != 1 || !strings.Contains(lines[0], name) || !strings.Contains(lines[0], tt.wantErr) {
				t.Errorf("stderr %q: want one line naming %s and %q", errs, name, tt.wantErr)
			}
			if got := strings.Contains(out, `"action":"esp-verdict"`); got != tt.verdicts {
				t.Errorf("verdicts before the fault printed: %v, want %v", got, tt.verdicts)
			}
		})
	}
}

func itoa(n int) string { return strconv.Itoa(n) }

func TestReplayGoesOnAfterABadFile(t *testing.T) {
	bad := filepath.Join(t.TempDir(), "bad.pcap")
	os.WriteFile(bad, []byte("nope"), 0o644)
	code, out, errs := runEspy(t, nil, "replay", "--format", "jsonl", bad, sample)
	if code != exitInput {
		t.Errorf("exit %d, want %d", code, exitInput)
	}
	if !strings.Contains(errs, "bad.pcap") || !strings.Contains(out, `"verdict":"null"`) {
		t.Errorf("the good file after the bad one was not analyzed: stderr %q", errs)
	}
}

func TestReplayStdinAndFlagsAfterFiles(t *testing.T) {
	code, out, errs := runEspy(t, readSample(t), "replay", "-", "--format", "jsonl")
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if n := strings.Count(out, `"action":"esp-flow-end"`); n != 48 {
		t.Errorf("%d flow-end records, want 48 (one per flow of the sample)", n)
	}
}

func TestReplayUsage(t *testing.T) {
	for _, args := range [][]string{
		{"replay"},
		{"replay", "--format", "xml", sample},
		{"replay", "--udp-port", "0", sample},
		{"nosuchcommand"},
		{},
	} {
		if code, _, _ := runEspy(t, nil, args...); code != exitUsage {
			t.Errorf("espy %q: exit %d, want %d", args, code, exitUsage)
		}
	}
	if code, _, errs := runEspy(t, nil, "replay", "--help"); code != exitOK || !strings.Contains(errs, "Exit codes") {
		t.Errorf("replay --help: exit %d, output lacks the exit codes", code)
	}
}

func TestReplayTable(t *testing.T) {
	code, out, errs := runEspy(t, nil, "replay", "--format", "table", sample)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	for _, want := range []string{"VERDICT", "null", "encrypted", "TOTAL", "48", "frames"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}

// TestReplaySchema validates every record against docs/verdict-schema.json
// with Python's jsonschema (Debian's python3-jsonschema, which make test
// installs).
func TestReplaySchema(t *testing.T) {
	py := ""
	for _, cand := range []string{"/usr/bin/python3", "python3"} {
		if exec.Command(cand, "-c", "import jsonschema").Run() == nil {
			py = cand
			break
		}
	}
	if py == "" {
		t.Skip("no python3 with the jsonschema module (Debian package python3-jsonschema)")
	}
	code, out, errs := runEspy(t, nil, "replay", "--format", "jsonl", sample, wespCapture(t))
	if !strings.Contains(out, `"verdict_source":"wesp"`) {
		t.Errorf("no WESP verdicts in the output")
	}
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	const validate = `
import json, sys, jsonschema
schema = json.load(open(sys.argv[1]))
cls = jsonschema.validators.validator_for(schema)
cls.check_schema(schema)
v = cls(schema, format_checker=cls.FORMAT_CHECKER)
n = 0
for n, line in enumerate(sys.stdin, 1):
    errs = list(v.iter_errors(json.loads(line)))
    if errs:
        print("line %d: %s" % (n, errs[0].message)); sys.exit(1)
print(n)
`
	cmd := exec.Command(py, "-c", validate, "../../docs/verdict-schema.json")
	cmd.Stdin = strings.NewReader(out)
	res, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("schema validation: %v: %s", err, res)
	}
	t.Logf("%s records valid", strings.TrimSpace(string(res)))
}

// TestWriteInner writes the cleartext of null flows and reads it back with
// tshark.
func TestWriteInner(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		t.Skip("tshark not installed (Debian package tshark)")
	}
	inner := filepath.Join(t.TempDir(), "inner.pcap")
	code, out, errs := runEspy(t, nil, "replay", "--format", "table", "--write-inner", inner, sample)
	if code != exitOK {
		t.Fatalf("exit %d: %s", code, errs)
	}
	if !strings.Contains(out, "inner packets written") {
		t.Fatalf("no inner packets written:\n%s", out)
	}
	cmd := exec.Command(tshark, "-n", "-r", inner, "-T", "fields", "-e", "frame.protocols", "-e", "ip.checksum.status", "-o", "ip.check_checksum:TRUE")
	res, err := cmd.Output()
	if err != nil {
		t.Fatalf("tshark: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(res)), "\n")
	var tcp, udp, bad int
	for _, l := range lines {
		f := strings.Split(l, "\t")
		if !strings.HasPrefix(f[0], "raw:ip") {
			t.Errorf("tshark decodes %q, want raw:ip…", f[0])
		}
		if strings.Contains(f[0], ":tcp") {
			tcp++
		}
		if strings.Contains(f[0], ":udp") {
			udp++
		}
		if len(f) > 1 && f[1] == "0" { // 0 = bad, 2 = unverified, 1 = good
			bad++
		}
	}
	if tcp == 0 || udp == 0 || bad != 0 {
		t.Errorf("tshark read %d packets: %d TCP, %d UDP, %d bad IPv4 header checksums", len(lines), tcp, udp, bad)
	}
	t.Logf("tshark read %d inner packets (%d TCP, %d UDP)", len(lines), tcp, udp)
}
