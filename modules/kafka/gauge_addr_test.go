package kafka

import (
	"reflect"
	"strings"
	"testing"
	"unsafe"
)

var writableGauge gauge

func TestGaugeAddressIsChecked(t *testing.T) {
	codeAddr := reflect.ValueOf(parseProducer).Pointer() // in the code's read-only mapping
	for _, tc := range []struct {
		name string
		addr uintptr
		ok   bool
	}{
		{"unmapped", 4096, false},
		{"misaligned", uintptr(unsafe.Pointer(&writableGauge)) + 1, false},
		{"read-only", codeAddr &^ 7, false},
		{"writable", uintptr(unsafe.Pointer(&writableGauge)), true},
	} {
		err := checkGaugeAddress(tc.addr)
		if tc.ok != (err == nil) {
			t.Errorf("%s (%#x): got %v", tc.name, tc.addr, err)
		}
		if err != nil && !strings.Contains(err.Error(), "is not writable memory") {
			t.Errorf("%s: unclear error %q", tc.name, err)
		}
	}
}
