package inline

import (
	"errors"
	"fmt"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/heuristics"
	"github.com/espy-dpi/espy/packet"
	"github.com/espy-dpi/espy/policy"
	pbpf "github.com/espy-dpi/espy/policy/bpf"
	"github.com/espy-dpi/espy/policy/classify"
)

// loadPolicy reads the policy section of the configuration file, publishes
// its compiled form to the fast path (or, when it does not fit the BPF maps,
// makes the fast path punt ESP-NULL packets to userspace), and keeps the Go
// classifier that answers punted packets.
func (d *Daemon) loadPolicy() error {
	pol, err := policy.LoadFile(d.cfg.File())
	if err != nil {
		return fmt.Errorf("inline: policy: %w", err)
	}
	return d.ReloadPolicy(pol)
}

// ReloadPolicy replaces the inspection policy with pol (espy run's SIGHUP
// and "espy ike reload"): it builds the Go classifier and the compiled
// tables anew and publishes them in one switch of the fast path's policy
// (ebpf.Program.PublishPolicy), then swaps the classifier for punted
// packets. On error the policy in force stays. Calls must not overlap.
// Answers to punted packets already stored as exact inner rules stay.
func (d *Daemon) ReloadPolicy(pol *policy.Policy) error {
	set, err := classify.FromPolicy(pol)
	if err != nil {
		return fmt.Errorf("inline: policy: %w", err)
	}
	compiled, cerr := pbpf.CompileRules(pol.Rules, pbpf.Options{})
	if err := d.prog.PublishPolicy(compiled, cerr); err != nil {
		return fmt.Errorf("inline: publish policy: %w", err)
	}
	d.set.Store(set)
	ev := d.log.Info().Int("rules", len(pol.Rules))
	if errors.Is(cerr, pbpf.ErrTooLargeForBPF) {
		ev = d.log.Warn().Int("rules", len(pol.Rules)).AnErr("reason", cerr)
		ev.Msg("policy too large for the fast path: ESP-NULL packets are classified in userspace")
		return nil
	}
	ev.Int("tables", len(compiled.Tables)).Msg("policy published to the fast path")
	return nil
}

// punted answers a sample of a decided null flow: the fast path sent it
// because its policy could not decide (too large, or a punt rule). The Go
// classifier decides, and the answer goes back as an exact inner rule, so
// the flow's next packets stay in the fast path.
func (d *Daemon) punted(v *heuristics.Verdict, p *packet.Packet) {
	set := d.set.Load()
	if set == nil {
		return
	}
	var in heuristics.Inner
	if !heuristics.Decapsulate(v, p, &in) || !in.Src.IsValid() || in.Src.Is4() != in.Dst.Is4() {
		return
	}
	if in.Proto == 1 || in.Proto == 58 {
		// The fast path's exact stage keys ICMP without type and code, so
		// an answer for one message type cannot be stored for it alone.
		return
	}
	pkt := policy.NewPacket(in.Src, in.Dst, in.Proto, in.SrcPort, in.DstPort)
	verdict := set.Lookup(&pkt)
	action := ebpf.ActionPass
	switch verdict.Action {
	case policy.ActionDrop, policy.ActionDiscard:
		action = ebpf.ActionDrop
	case policy.ActionLog:
		action = ebpf.ActionCount
	case policy.ActionNone:
		return // no rule: the configured default applies in the fast path
	}
	k, err := ebpf.NewInnerKey(in.Proto, in.Src, in.Dst, in.SrcPort, in.DstPort)
	if err != nil {
		return
	}
	if err := d.prog.SetInnerRule(k, action, uint32(verdict.Rule+1)); err != nil {
		d.log.Warn().Err(err).Msg("store the answer to a punted packet")
	}
}
