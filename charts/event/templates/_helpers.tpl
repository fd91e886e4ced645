{{/*
The event chart's own helpers. Names, labels, security contexts, probes and the shared manifests come from the
tessera-common library chart (charts/tessera-common).
*/}}

{{/* Settings only event reads; added to the ConfigMap. */}}
{{- define "event.config" -}}
TESSERA_GRPC_ADDR: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
{{- end -}}
