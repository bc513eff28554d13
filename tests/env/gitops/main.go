// Command health-check reads Kubernetes objects and tells what Flux, kubectl and Argo CD make of
// them, with the libraries those tools use:
//
//   - kstatus: sigs.k8s.io/cli-utils pkg/kstatus/status.Compute, which Flux's health checks and
//     `kubectl wait`-style tooling use for custom resources;
//   - Argo CD: its Lua health script for the object's group and kind, run with
//     github.com/yuin/gopher-lua exactly as Argo CD's util/lua runs a script from argocd-cm (the
//     same libraries, the object converted the same way, the result validated the same way);
//   - `kubectl wait --for=condition=Ready`: the check of k8s.io/kubectl pkg/cmd/wait
//     (ConditionalWait.checkCondition, v0.36), which also ignores a condition whose
//     observedGeneration is older than the object's generation;
//   - Flux with a Kustomization's `healthCheckExprs` for the kind (flux.go), when given.
//
// Input (stdin, JSON): {"scripts": {"<group>/<Kind>": "<lua>"}, "useOpenLibs": false,
// "healthCheckExprs": {"<group>/<Kind>": {"current", "failed", "inProgress"}},
// "objects": [<object>, ...]}. Output (stdout, JSON): one result per object, in order:
// {"kstatus": {"status", "message"}, "argocd": {"status", "message"}, "kubectlWaitReady": bool,
// "flux": {"status", "message"} or null, "errors": [...]}.
package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"github.com/fluxcd/pkg/apis/kustomize"
	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	luajson "layeh.com/gopher-json"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type request struct {
	Scripts          map[string]string                           `json:"scripts"`
	UseOpenLibs      bool                                        `json:"useOpenLibs"`
	HealthCheckExprs map[string]kustomize.HealthCheckExpressions `json:"healthCheckExprs"`
	Objects          []json.RawMessage                           `json:"objects"`
}

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Kstatus          *verdict `json:"kstatus"`
	ArgoCD           *verdict `json:"argocd"`
	KubectlWaitReady bool     `json:"kubectlWaitReady"`
	Flux             *verdict `json:"flux"`
	Errors           []string `json:"errors"`
}

// healthStatus is Argo CD's health.HealthStatus (gitops-engine pkg/health).
type healthStatus struct {
	Status  string `json:"status,omitempty"`
	Message string `json:"message,omitempty"`
}

var validHealth = map[string]bool{
	"Unknown": true, "Progressing": true, "Suspended": true, "Healthy": true, "Degraded": true,
	"Missing": true,
}

func main() {
	input, err := io.ReadAll(os.Stdin)
	if err != nil {
		fail(err)
	}
	var req request
	if err := json.Unmarshal(input, &req); err != nil {
		fail(fmt.Errorf("reading the request: %w", err))
	}
	results := make([]result, 0, len(req.Objects))
	for _, raw := range req.Objects {
		results = append(results, check(raw, req))
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(results); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "health-check:", err)
	os.Exit(2)
}

func check(raw json.RawMessage, req request) result {
	res := result{Errors: []string{}}
	// Decoded as the API machinery decodes objects in Argo CD's cluster cache and in kstatus
	// callers: integers become int64, other numbers float64.
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		res.Errors = append(res.Errors, "decoding the object: "+err.Error())
		return res
	}
	computed, err := status.Compute(obj.DeepCopy())
	if err != nil {
		res.Errors = append(res.Errors, "kstatus: "+err.Error())
	} else {
		res.Kstatus = &verdict{Status: computed.Status.String(), Message: computed.Message}
	}
	res.KubectlWaitReady = conditionMet(obj, "Ready", "True")
	key := configMapKey(obj)
	if exprs, found := req.HealthCheckExprs[key]; found {
		flux, err := fluxStatus(obj.DeepCopy(), exprs)
		if err != nil {
			res.Errors = append(res.Errors, "flux: "+err.Error())
		}
		res.Flux = flux
	}
	script, found := req.Scripts[key]
	if !found {
		res.Errors = append(res.Errors, "argocd: no health script for "+key)
		return res
	}
	health, err := executeHealthLua(obj, script, req.UseOpenLibs)
	if err != nil {
		res.Errors = append(res.Errors, "argocd: "+err.Error())
	} else {
		res.ArgoCD = &verdict{Status: health.Status, Message: health.Message}
	}
	return res
}

// configMapKey is Argo CD's lua.GetConfigMapKey: "<group>/<Kind>".
func configMapKey(obj *unstructured.Unstructured) string {
	gvk := obj.GroupVersionKind()
	if gvk.Group == "" {
		return gvk.Kind
	}
	return gvk.Group + "/" + gvk.Kind
}

// executeHealthLua follows Argo CD's VM.runLua and VM.ExecuteHealthLua (util/lua/lua.go).
func executeHealthLua(obj *unstructured.Unstructured, script string, useOpenLibs bool) (*healthStatus, error) {
	l := lua.NewState(lua.Options{SkipOpenLibs: !useOpenLibs})
	defer l.Close()
	for _, pair := range []struct {
		n string
		f lua.LGFunction
	}{
		{lua.LoadLibName, lua.OpenPackage},
		{lua.BaseLibName, lua.OpenBase},
		{lua.TabLibName, lua.OpenTable},
		{lua.OsLibName, OpenSafeOs},
	} {
		if err := l.CallByParam(lua.P{Fn: l.NewFunction(pair.f), NRet: 0, Protect: true}, lua.LString(pair.n)); err != nil {
			return nil, err
		}
	}
	l.PreloadModule(lua.OsLibName, SafeOsLoader)
	l.SetGlobal("actionParams", l.CreateTable(0, 0))
	l.SetGlobal("obj", decodeValue(l, obj.Object))
	if err := l.DoString(script); err != nil {
		var apiErr *lua.ApiError
		if errors.As(err, &apiErr) && apiErr.Type == lua.ApiErrorRun {
			apiErr.StackTrace = ""
			return nil, apiErr
		}
		return nil, err
	}
	returned := l.Get(-1)
	switch returned.Type() {
	case lua.LTTable:
		encoded, err := luajson.Encode(returned)
		if err != nil {
			return nil, err
		}
		health := &healthStatus{}
		if err := json.Unmarshal(encoded, health); err != nil {
			typeError := &json.UnmarshalTypeError{Value: "array", Type: reflect.TypeOf(health)}
			if errors.As(err, &typeError) {
				return &healthStatus{}, nil
			}
			return nil, err
		}
		if !validHealth[health.Status] {
			return &healthStatus{Status: "Unknown", Message: "Lua returned an invalid health status"}, nil
		}
		return health, nil
	case lua.LTNil:
		return &healthStatus{}, nil
	}
	return nil, fmt.Errorf("expect table output from Lua script, not %s", returned.Type().String())
}

// decodeValue is Argo CD's lua.decodeValue: the object as nested Lua tables.
func decodeValue(l *lua.LState, value any) lua.LValue {
	switch converted := value.(type) {
	case bool:
		return lua.LBool(converted)
	case float64:
		return lua.LNumber(converted)
	case string:
		return lua.LString(converted)
	case json.Number:
		return lua.LString(converted)
	case int:
		return lua.LNumber(converted)
	case int32:
		return lua.LNumber(converted)
	case int64:
		return lua.LNumber(converted)
	case []any:
		arr := l.CreateTable(len(converted), 0)
		for _, item := range converted {
			arr.Append(decodeValue(l, item))
		}
		return arr
	case map[string]any:
		tbl := l.CreateTable(0, len(converted))
		for key, item := range converted {
			tbl.RawSetH(lua.LString(key), decodeValue(l, item))
		}
		return tbl
	case nil:
		return lua.LNil
	}
	return lua.LNil
}

// conditionMet is kubectl wait's ConditionalWait.checkCondition for --for=condition=NAME=STATUS.
func conditionMet(obj *unstructured.Unstructured, name, want string) bool {
	conditions, found, err := unstructured.NestedSlice(obj.Object, "status", "conditions")
	if err != nil || !found {
		return false
	}
	for _, uncast := range conditions {
		condition, ok := uncast.(map[string]any)
		if !ok {
			continue
		}
		kind, found, err := unstructured.NestedString(condition, "type")
		if !found || err != nil || !strings.EqualFold(kind, name) {
			continue
		}
		status, found, err := unstructured.NestedString(condition, "status")
		if !found || err != nil {
			continue
		}
		generation, found, _ := unstructured.NestedInt64(obj.Object, "metadata", "generation")
		if found {
			observed, found := observedGeneration(obj, condition)
			if found && observed < generation {
				return false
			}
		}
		return strings.EqualFold(status, want)
	}
	return false
}

// observedGeneration is kubectl wait's getObservedGeneration: the condition's, else the status's.
func observedGeneration(obj *unstructured.Unstructured, condition map[string]any) (int64, bool) {
	if observed, found, _ := unstructured.NestedInt64(condition, "observedGeneration"); found {
		return observed, true
	}
	observed, found, _ := unstructured.NestedInt64(obj.Object, "status", "observedGeneration")
	return observed, found
}
