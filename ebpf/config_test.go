package ebpf

import (
	"testing"
)

func TestConfigDefaults(t *testing.T) {
	c, err := Config{}.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if c.VerdictEntries != DefaultVerdictEntries || c.FlowSlots != DefaultVerdictEntries+DefaultVerdictEntries/4 || c.SPDCacheEntries != DefaultSPDCacheEntries ||
		c.SampleCount != DefaultSampleCount || c.SnapLen != DefaultSnapLen ||
		c.EncryptedAction != ActionPass || c.InnerDefault != ActionPass {
		t.Fatalf("defaults: %+v", c)
	}
	b := c.bpf()
	if b.SampleIntervalNs != 1e9/DefaultSampleRate || b.SampleBurstNs != b.SampleIntervalNs*(DefaultSampleBurst-1) {
		t.Fatalf("GCRA: interval %d, tolerance %d", b.SampleIntervalNs, b.SampleBurstNs)
	}
	if b := (Config{NoRateLimit: true, DisableSampling: true, FailClosed: true, Bridge: true}).bpf(); b.SampleIntervalNs != 0 || b.SampleCount != 0 || b.FailClosed != 1 || b.Bridge != 1 {
		t.Fatalf("flags: %+v", b)
	}
}

func TestConfigInvalid(t *testing.T) {
	for _, c := range []Config{
		{SnapLen: MaxSnapLen + 1},
		{EncryptedAction: 9},
		{InnerDefault: 4},
		{VerdictEntries: -1},
		{FlowSlots: 1 << 31},
	} {
		if _, err := c.withDefaults(); err == nil {
			t.Errorf("%+v accepted", c)
		}
	}
}

func TestReconfigureKeepsSizes(t *testing.T) {
	p := loadTest(t, smallMaps(Config{}))
	if err := p.Reconfigure(Config{VerdictEntries: 512}); err == nil {
		t.Fatal("size change accepted")
	}
	if err := p.Reconfigure(smallMaps(Config{FailClosed: true})); err != nil {
		t.Fatal(err)
	}
	if !p.Config().FailClosed {
		t.Fatal("config not updated")
	}
}

func TestVerdictValidation(t *testing.T) {
	p := loadTest(t, smallMaps(Config{}))
	k := key4(t, 1, 0, 0, 0)
	for _, v := range []Verdict{{Kind: 3}, {Kind: VerdictEncrypted, ActionEncrypted: 4}, {Kind: VerdictNull, Mode: 3}} {
		if err := p.SetVerdict(k, v); err == nil {
			t.Errorf("%+v accepted", v)
		}
	}
	if err := p.SetInnerRule(inner(t, 6, innerSrc4, innerDst4, 1, 2), ActionDefault, 1); err == nil {
		t.Error("inner rule with the default action accepted")
	}
	if _, err := NewFlowKey(outerSrc4, outerDst6, 1, 0, 0, 0); err == nil {
		t.Error("mixed-family flow key accepted")
	}
}
