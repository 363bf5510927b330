// Command porcupine-adapter checks one history file with Porcupine
// (github.com/anishathalye/porcupine) and prints one line:
//
//	VERDICT CHECK_MS OPERATIONS
//
// VERDICT is linearizable, not-linearizable or unknown (Porcupine's timeout).
// The file is `consensus simulate --history`'s JSON, or a Jepsen register log
// (`-jepsen`, mapped as consensus-actors/src/history/jepsen.rs does). The
// model is a key-value store partitioned by key, one register per key, with
// the semantics of consensus-actors' KvStore. Failed operations and reads
// with an unknown outcome are left out (they constrain nothing); other
// operations with an unknown outcome return at +infinity and accept any
// output, which is how Porcupine expresses "may or may not have happened".
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"github.com/anishathalye/porcupine"
)

type input struct {
	op       byte // 'g', 'p', 'd', 'c'
	key      string
	value    string  // put's value, cas's new
	expected *string // cas
}

type output struct {
	unknown bool
	kind    string // Ok, Value, Deleted, CasOk, CasFailed, CasFailedUnreported
	value   *string
	existed bool
}

type state struct {
	present bool
	value   string
}

func same(a, b *string) bool {
	return (a == nil && b == nil) || (a != nil && b != nil && *a == *b)
}

func step(s interface{}, in interface{}, out interface{}) (bool, interface{}) {
	st, i, o := s.(state), in.(input), out.(output)
	var cur *string
	if st.present {
		v := st.value
		cur = &v
	}
	next := st
	var kind string
	var val *string
	existed := false
	switch i.op {
	case 'g':
		kind, val = "Value", cur
	case 'p':
		kind, next = "Ok", state{true, i.value}
	case 'd':
		kind, existed, next = "Deleted", st.present, state{}
	case 'c':
		if same(cur, i.expected) {
			kind, next = "CasOk", state{true, i.value}
		} else {
			kind, val = "CasFailed", cur
		}
	}
	if o.unknown {
		return true, next
	}
	ok := o.kind == kind
	switch o.kind {
	case "Value", "CasFailed":
		ok = ok && same(o.value, val)
	case "Deleted":
		ok = ok && o.existed == existed
	case "CasFailedUnreported":
		ok = kind == "CasFailed"
	}
	return ok, next
}

var model = porcupine.Model{
	Partition: func(h []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		var keys []string
		for _, op := range h {
			k := op.Input.(input).key
			if _, seen := byKey[k]; !seen {
				keys = append(keys, k)
			}
			byKey[k] = append(byKey[k], op)
		}
		parts := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			parts = append(parts, byKey[k])
		}
		return parts
	},
	Init: func() interface{} { return state{} },
	Step: step,
}

type rawOp struct {
	Client  int                        `json:"client"`
	Command json.RawMessage            `json:"command"`
	Invoke  int64                      `json:"invoke_us"`
	Outcome map[string]json.RawMessage `json:"outcome"`
}

func readJSON(path string) ([]porcupine.Operation, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var doc struct {
		Operations []rawOp `json:"operations"`
	}
	if err := json.NewDecoder(bufio.NewReader(f)).Decode(&doc); err != nil {
		return nil, err
	}
	var ops []porcupine.Operation
	for _, r := range doc.Operations {
		var cmd map[string]struct {
			Key      string  `json:"key"`
			Value    string  `json:"value"`
			Expected *string `json:"expected"`
			New      string  `json:"new"`
		}
		if json.Unmarshal(r.Command, &cmd) != nil {
			continue // "Noop"
		}
		var in input
		for name, c := range cmd {
			switch name {
			case "Get":
				in = input{op: 'g', key: c.Key}
			case "Put":
				in = input{op: 'p', key: c.Key, value: c.Value}
			case "Delete":
				in = input{op: 'd', key: c.Key}
			case "Cas":
				in = input{op: 'c', key: c.Key, value: c.New, expected: c.Expected}
			}
		}
		var status string
		json.Unmarshal(r.Outcome["status"], &status)
		var out output
		ret := int64(math.MaxInt64)
		switch status {
		case "fail":
			continue
		case "unknown":
			if in.op == 'g' {
				continue
			}
			out.unknown = true
		default:
			json.Unmarshal(r.Outcome["complete_us"], &ret)
			var word string
			if json.Unmarshal(r.Outcome["output"], &word) == nil {
				out.kind = word
			} else {
				var tagged map[string]json.RawMessage
				json.Unmarshal(r.Outcome["output"], &tagged)
				for k, v := range tagged {
					out.kind = k
					if k == "Deleted" {
						json.Unmarshal(v, &out.existed)
					} else {
						json.Unmarshal(v, &out.value)
					}
				}
			}
		}
		ops = append(ops, porcupine.Operation{ClientId: r.Client, Input: in, Call: r.Invoke, Output: out, Return: ret})
	}
	return ops, nil
}

// readJepsen maps a Jepsen register log as consensus-actors' jepsen.rs does:
// time is the line number, `:fail :cas` is a compare-and-swap that did not
// hold, other failures did not happen, `:info` and `:timed-out` are unknown.
func readJepsen(path string) ([]porcupine.Operation, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	type open struct {
		in   input
		call int64
	}
	pending := map[int]open{}
	var ops []porcupine.Operation
	for n, line := range strings.Split(string(data), "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		var proc int
		fmt.Sscan(f[3], &proc)
		event, fn, val := f[4], f[5], strings.Join(f[6:], " ")
		t := int64(n + 1)
		if event == ":invoke" {
			in := input{op: 'g', key: "r"}
			switch fn {
			case ":write":
				in = input{op: 'p', key: "r", value: val}
			case ":cas":
				var a, b string
				fmt.Sscan(strings.Trim(val, "[]"), &a, &b)
				in = input{op: 'c', key: "r", value: b, expected: &a}
			}
			pending[proc] = open{in, t}
			continue
		}
		o, ok := pending[proc]
		if !ok {
			return nil, fmt.Errorf("line %d: process %d completes nothing", n+1, proc)
		}
		delete(pending, proc)
		out, ret := output{}, t
		switch {
		case event == ":info" || val == ":timed-out":
			if o.in.op == 'g' {
				continue
			}
			out.unknown, ret = true, math.MaxInt64
		case event == ":fail" && fn == ":cas":
			out.kind = "CasFailedUnreported"
		case event == ":fail":
			continue
		case fn == ":read":
			out.kind = "Value"
			if val != "nil" {
				out.value = &val
			}
		case fn == ":write":
			out.kind = "Ok"
		default:
			out.kind = "CasOk"
		}
		ops = append(ops, porcupine.Operation{ClientId: proc, Input: o.in, Call: o.call, Output: out, Return: ret})
	}
	for proc, o := range pending {
		if o.in.op != 'g' {
			ops = append(ops, porcupine.Operation{ClientId: proc, Input: o.in, Call: o.call, Output: output{unknown: true}, Return: math.MaxInt64})
		}
	}
	return ops, nil
}

func main() {
	jepsen := flag.Bool("jepsen", false, "the file is a Jepsen register log")
	timeout := flag.Duration("timeout", time.Minute, "Porcupine's timeout (0: none)")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: porcupine-adapter [-jepsen] [-timeout D] FILE")
		os.Exit(2)
	}
	read := readJSON
	if *jepsen {
		read = readJepsen
	}
	ops, err := read(flag.Arg(0))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	start := time.Now()
	res := porcupine.CheckOperationsTimeout(model, ops, *timeout)
	ms := float64(time.Since(start).Microseconds()) / 1000
	verdict := map[porcupine.CheckResult]string{
		porcupine.Ok: "linearizable", porcupine.Illegal: "not-linearizable", porcupine.Unknown: "unknown",
	}[res]
	fmt.Printf("%s %.1f %d\n", verdict, ms, len(ops))
}
