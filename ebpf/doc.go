// Package ebpf loads and drives espy's XDP fast path.
//
// The XDP program (xdp/espy.c, compiled by bpf2go into bpf_bpfel.o and
// bpf_bpfeb.o) parses every frame down to its ESP or WESP header and looks
// the SA up in a verdict map that userspace fills. ESP-NULL flows are opened
// and their inner 5-tuple is checked against an inner-policy map; encrypted
// flows get the configured action; the first frames of an unknown flow are
// sent whole to userspace through a BPF ring buffer, where the RFC 5879
// heuristics decide and write the verdict back with [Program.SetVerdict].
//
// A typical lifetime:
//
//	p, err := ebpf.Load(ebpf.Config{PinPath: ebpf.DefaultPinPath})
//	mode, err := p.Attach(ifindex, ebpf.AttachAuto)
//	r, err := p.NewSampleReader()
//	for { r.Read(&s); ...; p.SetVerdict(s.Key, v) }
//
// See docs/ebpf.md for the map layouts and exit reasons.
package ebpf
