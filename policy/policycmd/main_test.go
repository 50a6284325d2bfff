package policycmd

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func run(args ...string) (code int, stdout, stderr string) {
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return code, o.String(), e.String()
}

// timing masks run-dependent figures in golden output.
var timing = regexp.MustCompile(`ms=[0-9.]+`)

func golden(t *testing.T, name, got string) {
	t.Helper()
	got = timing.ReplaceAllString(got, "ms=X")
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs from %s:\n%s", name, path, got)
	}
}

func TestCheck(t *testing.T) {
	code, out, errOut := run("check", "testdata/example.yaml")
	if code != ExitOK || errOut != "" {
		t.Fatalf("example: code %d, stderr %q", code, errOut)
	}
	golden(t, "check-example", out)

	code, out, _ = run("check", "testdata/shadow.yaml")
	if code != ExitInvalid {
		t.Errorf("shadow: code %d, want %d (a conflicting shadowed rule)", code, ExitInvalid)
	}
	for _, want := range []string{`shadowed: "lan-web" (line 7) is never reached`, `redundant: "lan-dup" (line 12)`, `"lan" (line 4)`} {
		if !strings.Contains(out, want) {
			t.Errorf("shadow output lacks %q:\n%s", want, out)
		}
	}
	golden(t, "check-shadow", out)

	code, _, errOut = run("check", "testdata/bad.yaml")
	if code != ExitInvalid || !strings.Contains(errOut, "testdata/bad.yaml:9") || !strings.Contains(errOut, `rule "broken"`) {
		t.Errorf("bad: code %d, stderr %q", code, errOut)
	}
}

func TestDecorrelate(t *testing.T) {
	code, out, errOut := run("decorrelate", "testdata/example.yaml")
	if code != ExitOK {
		t.Fatalf("code %d: %s", code, errOut)
	}
	golden(t, "decorrelate-example", out)
	code, _, errOut = run("decorrelate", "--max-entries", "3", "testdata/example.yaml")
	if code != ExitInvalid || !strings.Contains(errOut, "decorrelation exceeds entry limit") {
		t.Errorf("bounded: code %d, stderr %q", code, errOut)
	}
}

func TestBench(t *testing.T) {
	code, out, errOut := run("bench", "--classbench", "../classbench/testdata/fw1_300", "--trace", "../classbench/testdata/fw1_300.trace", "--rounds", "1")
	if code != ExitOK {
		t.Fatalf("code %d: %s\n%s", code, errOut, out)
	}
	last := out[strings.LastIndex(strings.TrimRight(out, "\n"), "\n")+1:]
	re := regexp.MustCompile(`^bench: rules=300 entries=\d+ build_ms=[0-9.]+ linear_ns=\d+ classifier_ns=\d+ speedup=[0-9.]+ mismatches=0 bpf_ns=(-|\d+)\n$`)
	if !re.MatchString(last) {
		t.Errorf("last line %q does not match %s", last, re)
	}
	// The line before it gives the 99th percentiles.
	lines := strings.Split(strings.TrimRight(out, "\n"), "\n")
	p99 := regexp.MustCompile(`^p99: linear_ns=\d+ classifier_ns=\d+ .* median \d+ p99 \d+ ns `)
	if len(lines) < 2 || !p99.MatchString(lines[len(lines)-2]) {
		t.Errorf("line before the last does not match %s:\n%s", p99, out)
	}
	// Without a trace, headers are drawn from the rules.
	code, out, _ = run("bench", "--classbench", "../classbench/testdata/acl1_300", "--rounds", "1")
	if code != ExitOK || !strings.Contains(out, "mismatches=0") {
		t.Errorf("no trace: code %d\n%s", code, out)
	}
	// A trace that disagrees is reported and fails.
	bad := filepath.Join(t.TempDir(), "bad.trace")
	os.WriteFile(bad, []byte("3232235777 3232235778 1 2 6 1\n"), 0o644)
	code, out, _ = run("bench", "--classbench", "../classbench/testdata/acl1_300", "--trace", bad, "--rounds", "1")
	if code != ExitInvalid || !strings.Contains(out, "mismatches=") || strings.Contains(out, "mismatches=0 ") {
		t.Errorf("bad trace: code %d\n%s", code, out)
	}
}

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		code int
		out  string
	}{
		{nil, ExitUsage, ""},
		{[]string{"--help"}, ExitOK, "usage: espy policy"},
		{[]string{"frobnicate"}, ExitUsage, ""},
		{[]string{"check", "--help"}, ExitOK, "usage: espy policy check"},
		{[]string{"decorrelate", "--help"}, ExitOK, "max-entries"},
		{[]string{"bench", "--help"}, ExitOK, "--classbench"},
		{[]string{"bench"}, ExitUsage, ""},
		{[]string{"check"}, ExitUsage, ""},
		{[]string{"check", "--bogus", "x"}, ExitUsage, ""},
		{[]string{"check", "testdata/missing.yaml"}, ExitInvalid, ""},
	} {
		code, out, _ := run(tc.args...)
		if code != tc.code || !strings.Contains(out, tc.out) {
			t.Errorf("%v: code %d, stdout %q; want %d containing %q", tc.args, code, out, tc.code, tc.out)
		}
	}
}
