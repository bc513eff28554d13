package main

import (
	"context"

	"github.com/fluxcd/pkg/apis/kustomize"
	"github.com/fluxcd/pkg/runtime/cel"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
)

// fluxStatus is what Flux's kustomize-controller makes of an object with a Kustomization's
// `healthCheckExprs` for its kind: the CEL status evaluator of github.com/fluxcd/pkg/runtime.
func fluxStatus(obj *unstructured.Unstructured, exprs kustomize.HealthCheckExpressions) (*verdict, error) {
	evaluator, err := cel.NewStatusEvaluator(&exprs)
	if err != nil {
		return nil, err
	}
	result, err := evaluator.Evaluate(context.Background(), obj)
	if err != nil {
		return nil, err
	}
	return &verdict{Status: result.Status.String(), Message: result.Message}, nil
}
