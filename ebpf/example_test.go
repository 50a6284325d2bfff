package ebpf_test

import (
	"errors"
	"log"
	"os"
	"time"

	"github.com/espy-dpi/espy/ebpf"
)

// The inline loop: attach, read samples of unknown flows, decide, write the
// verdict back, sweep idle flows.
func Example() {
	p, err := ebpf.Load(ebpf.Config{PinPath: ebpf.DefaultPinPath})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	const ifindex = 2
	mode, err := p.Attach(ifindex, ebpf.AttachAuto)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("XDP in %v mode", mode)

	r, err := p.NewSampleReader()
	if err != nil {
		log.Fatal(err)
	}
	defer r.Close()
	go func() {
		var snap ebpf.Snapshot
		for range time.Tick(30 * time.Second) {
			idle, next, err := p.IdleFlows(snap)
			if err != nil {
				log.Print(err)
				continue
			}
			for _, k := range idle {
				p.DeleteVerdict(k)
			}
			snap = next
		}
	}()

	var s ebpf.Sample
	for {
		if err := r.Read(&s); err != nil {
			if errors.Is(err, os.ErrClosed) {
				return
			}
			log.Fatal(err)
		}
		// s.Frame[s.ESPOff:] is the ESP packet: hand it to the
		// heuristics, and once they decide:
		v := ebpf.Verdict{Kind: ebpf.VerdictNull, IcvLen: 12, Mode: ebpf.ModeTunnel}
		if err := p.SetVerdict(s.Key, v); err != nil {
			log.Print(err)
		}
	}
}
