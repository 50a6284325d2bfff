package espsynth_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/espy-dpi/espy/espsynth"
)

// scorer is the shared corpus's scoring tool, which must accept generated
// labels as it accepts the corpus's own.
const scorer = "/work/shared/tools/score_verdicts.py"

// TestScoreVerdictsReadsLabels feeds generated labels to the scorer with
// verdicts that repeat them (a perfect classifier) and with one encrypted
// flow called null, and checks the scores.
func TestScoreVerdictsReadsLabels(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("python3 not installed")
	}
	if _, err := os.Stat(scorer); err != nil {
		t.Skipf("scorer not present: %v", err)
	}
	g, err := espsynth.NewGenerator(9, espsynth.Config{NumFlows: 60, Packets: 600})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	var lb bytes.Buffer
	if err := g.WritePcap(&bytes.Buffer{}, &lb, "s.pcap"); err != nil {
		t.Fatal(err)
	}
	labels := g.Labels("s.pcap")
	nulls := 0
	for _, l := range labels {
		if l.Verdict == "null" {
			nulls++
		}
	}
	if nulls == 0 || nulls == len(labels) {
		t.Fatalf("%d null flows of %d: need both kinds", nulls, len(labels))
	}
	for _, tc := range []struct {
		name      string
		falseNull int
	}{{"perfect", 0}, {"one false null", 1}} {
		var v bytes.Buffer
		flipped := 0
		for _, l := range labels {
			verdict := l.Verdict
			if verdict == "encrypted" && flipped < tc.falseNull {
				verdict, flipped = "null", flipped+1
			}
			rec := map[string]any{
				"source":      map[string]any{"ip": l.Src},
				"destination": map[string]any{"ip": l.Dst},
				"esp":         map[string]any{"spi": fmt.Sprintf("0x%08x", l.SPI), "verdict": verdict, "icv_len": l.ICVLen},
			}
			b, _ := json.Marshal(rec)
			v.Write(append(b, '\n'))
		}
		lf, vf := filepath.Join(dir, "labels.jsonl"), filepath.Join(dir, "verdicts.jsonl")
		if err := os.WriteFile(lf, lb.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vf, v.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(py, scorer, lf, vf).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: scorer: %v\n%s", tc.name, err, out)
		}
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		want := fmt.Sprintf("score: null_recall=1.000 enc_false_null=%d icv_acc=1.000 flows=%d", tc.falseNull, len(labels))
		if got := lines[len(lines)-1]; got != want {
			t.Errorf("%s: scorer says %q, want %q", tc.name, got, want)
		}
	}
}
