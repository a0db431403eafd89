package core

import (
	"fmt"
	"testing"
)

func TestStatPolicy(t *testing.T) {
	// fields 3 to 52 of a Linux 6.x stat line, each holding its number,
	// but field 41 (policy), set by each case
	tail := " S 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21 22 23 24 25 26 27 28 29 30 31 32 33 34 35 36 37 38 39 40 %s 42 43 44 45 46 47 48 49 50 51 52\n"
	for _, tc := range []struct {
		name, stat string
		policy     int
		ok         bool
	}{
		{"other", "123 (nginx)" + fmt.Sprintf(tail, "0"), 0, true},
		{"batch", "123 (nginx)" + fmt.Sprintf(tail, "3"), 3, true},
		{"name with spaces and parens", "123 (a) b (c)" + fmt.Sprintf(tail, "3"), 3, true},
		{"truncated", "123 (nginx) S 1 2 3", 0, false},
		{"no name", "garbage", 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			policy, ok := statPolicy([]byte(tc.stat))
			if policy != tc.policy || ok != tc.ok {
				t.Fatalf("statPolicy(%q) = %d, %v; want %d, %v", tc.stat, policy, ok, tc.policy, tc.ok)
			}
		})
	}
}

func TestThreadPoliciesCountsThisProcess(t *testing.T) {
	threads, batch := threadPolicies()
	if threads < 1 {
		t.Fatalf("threadPolicies() found %d threads", threads)
	}
	// go test does not change policies: nothing here is SCHED_BATCH
	if batch != 0 {
		t.Fatalf("threadPolicies() found %d SCHED_BATCH threads in go test", batch)
	}
}
