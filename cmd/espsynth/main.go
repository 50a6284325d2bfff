// Command espsynth writes a labelled capture of synthetic IPsec ESP traffic:
// a classic pcap of Ethernet frames, and one JSON line per ESP flow in the
// shared corpus's label format.
//
//	espsynth -seed 1 -flows 200 -packets 100000 -o synth.pcap -labels synth.jsonl
//
// The output depends only on the flags, so a capture can be rebuilt
// instead of stored.
package main

import (
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
	if err := run(os.Args[1:], os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "espsynth:", err)
		os.Exit(1)
	}
}

func run(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("espsynth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	seed := fs.Int64("seed", 1, "random seed; the same seed and flags give the same capture")
	flows := fs.Int("flows", 100, "number of ESP flows (SAs)")
	packets := fs.Int("packets", 10000, "number of ESP packets, spread over the flows")
	background := fs.Float64("background", 0.05, "share of frames that are non-ESP background (0 to 0.9)")
	out := fs.String("o", "", "output pcap file (required; - for stdout)")
	labels := fs.String("labels", "", "output labels file, JSON lines (optional)")
	name := fs.String("pcap-name", "", "capture name written in the labels (default: base name of -o)")
	quiet := fs.Bool("q", false, "do not print a summary on stderr")
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
	start := time.Now()
	g, err := espsynth.NewGenerator(*seed, espsynth.Config{
		NumFlows:   *flows,
		Packets:    *packets,
		Background: *background,
	})
	if err != nil {
		return err
	}
	if *name == "" {
		*name = filepath.Base(*out)
	}
	var pw io.Writer = os.Stdout
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			return err
		}
		defer f.Close()
		pw = f
	}
	var lw io.Writer
	if *labels != "" {
		f, err := os.Create(*labels)
		if err != nil {
			return err
		}
		defer f.Close()
		lw = f
	}
	if err := g.WritePcap(pw, lw, *name); err != nil {
		return err
	}
	if c, ok := pw.(io.Closer); ok && *out != "-" {
		if err := c.Close(); err != nil {
			return fmt.Errorf("closing %s: %w", *out, err)
		}
	}
	if c, ok := lw.(io.Closer); ok {
		if err := c.Close(); err != nil {
			return fmt.Errorf("closing %s: %w", *labels, err)
		}
	}
	if !*quiet {
		fmt.Fprintf(stderr, "espsynth: %d frames (%d ESP packets, %d flows) in %.2fs\n",
			g.Frames(), *packets, len(g.Labels(*name)), time.Since(start).Seconds())
	}
	return nil
}
