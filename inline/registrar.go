package inline

import (
	"errors"
	"fmt"
	"time"

	"github.com/espy-dpi/espy/ebpf"
	"github.com/espy-dpi/espy/flowcache"
	"github.com/espy-dpi/espy/ike"
)

// Registrar tells the flow cache, and the fast path when there is one, the
// exact algorithms of the gateway's own Child SAs, so that espy never runs
// heuristics on them: it implements ike.SARegistrar.
type Registrar struct {
	cache *flowcache.Cache
	prog  *ebpf.Program // nil without a fast path (tests, replay)
}

var _ ike.SARegistrar = (*Registrar)(nil)

// NewRegistrar returns a registrar writing to cache and, if prog is not
// nil, to the BPF verdict map.
func NewRegistrar(cache *flowcache.Cache, prog *ebpf.Program) *Registrar {
	return &Registrar{cache: cache, prog: prog}
}

// RegisterSA records one direction of a Child SA as a known flow.
func (r *Registrar) RegisterSA(sa ike.SAInfo) error {
	if sa.IVLen < 0 || sa.IVLen > 255 || sa.ICVLen < 0 || sa.ICVLen > 255 {
		return fmt.Errorf("inline: register SA %#x: IV %d or ICV %d bytes out of range", sa.SPI, sa.IVLen, sa.ICVLen)
	}
	k := flowcache.NewKey(sa.Src, sa.Dst, sa.SPI)
	r.cache.Register(k, sa.Null, uint8(sa.ICVLen), uint8(sa.IVLen), time.Now().UnixNano())
	if r.prog == nil {
		return nil
	}
	bk, err := bpfKey(sa)
	if err != nil {
		return fmt.Errorf("inline: register SA %#x: %w", sa.SPI, err)
	}
	v := ebpf.Verdict{Kind: ebpf.VerdictEncrypted}
	if sa.Null {
		v = ebpf.Verdict{Kind: ebpf.VerdictNull, IcvLen: uint8(sa.ICVLen), IvLen: uint8(sa.IVLen)}
		switch sa.Mode {
		case ike.ModeTunnel:
			v.Mode = ebpf.ModeTunnel
		case ike.ModeTransport:
			v.Mode = ebpf.ModeTransport
		}
	}
	if err := r.prog.SetVerdict(bk, v); err != nil {
		return fmt.Errorf("inline: register SA %#x in the fast path: %w", sa.SPI, err)
	}
	return nil
}

// UnregisterSA forgets a Child SA that was deleted or rekeyed away.
func (r *Registrar) UnregisterSA(sa ike.SAInfo) {
	r.cache.Remove(flowcache.NewKey(sa.Src, sa.Dst, sa.SPI))
	if r.prog == nil {
		return
	}
	if bk, err := bpfKey(sa); err == nil {
		if err := r.prog.DeleteVerdict(bk); err != nil && !errors.Is(err, ebpf.ErrNotFound) {
			return
		}
	}
}

func bpfKey(sa ike.SAInfo) (ebpf.FlowKey, error) {
	if sa.Encap == ike.EncapUDP {
		return ebpf.NewFlowKey(sa.Src, sa.Dst, sa.SPI, ebpf.EncapUDP, sa.SrcPort, sa.DstPort)
	}
	return ebpf.NewFlowKey(sa.Src, sa.Dst, sa.SPI, ebpf.EncapNone, 0, 0)
}
