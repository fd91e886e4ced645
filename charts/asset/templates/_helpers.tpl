{{/*
The asset chart's own helpers. Names, labels, security contexts, probes and the shared manifests come from the
tessera-common library chart (charts/tessera-common).
*/}}

{{/* Settings only the ledger reads; added to the ConfigMap. */}}
{{- define "asset.config" -}}
TESSERA_GRPC_ADDR: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
TESSERA_CHANNELS: {{ required "channels is required, e.g. mychannel=org1,org2" .Values.channels | quote }}
{{- end -}}
