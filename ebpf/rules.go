package ebpf

import (
	"errors"
	"fmt"

	"github.com/cilium/ebpf"
)

// SetInnerRule stores the action for an exact inner 5-tuple of ESP-NULL
// traffic; a is ActionPass, ActionDrop or ActionCount. Replacing a rule
// resets its hit count.
func (p *Program) SetInnerRule(k InnerKey, a Action, ruleID uint32) error {
	if a != ActionPass && a != ActionDrop && a != ActionCount {
		return fmt.Errorf("ebpf: inner rule %d: action %v not allowed", ruleID, a)
	}
	r := InnerRule{Action: uint8(a), RuleId: ruleID}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	var old InnerRule
	isNew := errors.Is(p.objs.InnerRules.Lookup(&k, &old), ebpf.ErrKeyNotExist)
	if isNew && p.innerRules == 0 {
		// Turn the exact stage on before the first rule is in place:
		// a packet in between merely looks into an empty map.
		p.innerRules++
		if err := p.writeConfig(p.cfg); err != nil {
			p.innerRules--
			return fmt.Errorf("ebpf: inner rule %d: %w", ruleID, err)
		}
		p.innerRules--
	}
	if err := p.objs.InnerRules.Put(&k, &r); err != nil {
		return fmt.Errorf("ebpf: inner rule %d: %w", ruleID, err)
	}
	if isNew {
		p.innerRules++
	}
	return nil
}

// InnerRule returns the stored rule, with its hit count, or an error
// wrapping ErrNotFound.
func (p *Program) InnerRule(k InnerKey) (InnerRule, error) {
	var r InnerRule
	if err := p.objs.InnerRules.Lookup(&k, &r); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = ErrNotFound
		}
		return InnerRule{}, fmt.Errorf("ebpf: inner rule: %w", err)
	}
	return r, nil
}

// DeleteInnerRule removes a rule, or returns an error wrapping ErrNotFound.
func (p *Program) DeleteInnerRule(k InnerKey) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.objs.InnerRules.Delete(&k); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			err = ErrNotFound
		}
		return fmt.Errorf("ebpf: delete inner rule: %w", err)
	}
	p.innerRules--
	if p.innerRules == 0 {
		// The last rule is gone: skip the exact stage again.
		if err := p.writeConfig(p.cfg); err != nil {
			return fmt.Errorf("ebpf: delete inner rule: %w", err)
		}
	}
	return nil
}
