{{/*
The storage chart's own helpers. Names, labels, security contexts, probes and the shared manifests come from the
tessera-common library chart (charts/tessera-common).
*/}}

{{/* Settings only storage reads; added to the ConfigMap. */}}
{{- define "storage.config" -}}
TESSERA_GRPC_ADDR: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
TESSERA_STORAGE_ROOT: {{ .Values.persistence.mountPath | quote }}
{{- end -}}

{{- define "storage.claimName" -}}
{{- default (printf "%s-data" (include "tessera-common.fullname" .)) .Values.persistence.existingClaim -}}
{{- end -}}
