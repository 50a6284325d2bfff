// Command espsynth writes a labelled capture of synthetic IPsec ESP traffic:
// a classic pcap of Ethernet frames, one JSON line per ESP flow in the
// shared corpus's label format, and optionally the keys as a Wireshark
// esp_sa table.
//
//	espsynth -seed 1 -flows 200 -packets 100000 -o synth.pcap -labels synth.jsonl
//
// The output depends only on the flags, so a capture can be rebuilt
// instead of stored.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/espy-dpi/espy/espsynth"
)

func main() {
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "espsynth:", err)
		}
		os.Exit(2)
	}
}

func run(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("espsynth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Int64("seed", 1, "random seed; the same seed and flags give the same capture")
	flows := fs.Int("flows", 100, "number of ESP flows (SAs)")
	packets := fs.Int("packets", 10000, "number of ESP packets, spread over the flows")
	background := fs.Float64("background", 0.05, "share of frames that are non-ESP background (0 to 0.9)")
	vlan := fs.Uint("vlan", 0, "802.1Q VLAN ID to tag every frame with (0: untagged)")
	out := fs.String("o", "", "output pcap file (required; - for standard output)")
	labels := fs.String("labels", "", "output labels file, JSON lines (optional)")
	espSA := fs.String("esp-sa", "", "output Wireshark esp_sa table with the keys (optional)")
	name := fs.String("pcap-name", "", "capture name written in the labels (default: base name of -o)")
	quiet := fs.Bool("q", false, "do not print a summary on standard error")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: espsynth -o OUT.pcap [-labels OUT.jsonl] [-seed N] [-flows F] [-packets P] [flags]")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		fs.Usage()
		return errors.New("-o is required")
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if *name == "" {
		*name = filepath.Base(*out)
	}
	start := time.Now()
	g, err := espsynth.NewGenerator(*seed, espsynth.Config{
		NumFlows:   *flows,
		Packets:    *packets,
		Background: *background,
		VLAN:       uint16(min(*vlan, 4095)),
	})
	if err != nil {
		return err
	}
	// The labels follow the capture: their packet counts are known only
	// once every packet is out.
	err = create(*out, stdout, func(w io.Writer) error { return g.WritePcap(w, nil, *name) })
	if err != nil {
		return err
	}
	all := g.Labels(*name)
	if *labels != "" {
		err := create(*labels, stdout, func(w io.Writer) error { return espsynth.WriteLabels(w, all) })
		if err != nil {
			return err
		}
	}
	if *espSA != "" {
		var skipped int
		err := create(*espSA, stdout, func(w io.Writer) (err error) {
			skipped, err = espsynth.WriteWiresharkESPSA(w, g.SAs())
			return err
		})
		if err != nil {
			return err
		}
		if skipped > 0 && !*quiet {
			fmt.Fprintf(stderr, "espsynth: %d SAs (ChaCha20-Poly1305, ENCR_NULL_AUTH_AES_GMAC) are not in %s: Wireshark cannot decrypt them\n", skipped, *espSA)
		}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "espsynth: %d frames (%d ESP packets in %d flows, %d background) in %.2fs\n",
			g.Frames(), *packets, len(all), g.Frames()-*packets, time.Since(start).Seconds())
	}
	return nil
}

// create writes a file through a buffer with fill; "-" means stdout.
func create(path string, stdout io.Writer, fill func(io.Writer) error) error {
	if path == "-" {
		bw := bufio.NewWriter(stdout)
		if err := fill(bw); err != nil {
			return err
		}
		return bw.Flush()
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	bw := bufio.NewWriterSize(f, 1<<20)
	if err := fill(bw); err != nil {
		f.Close()
		return err
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return fmt.Errorf("writing %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}
