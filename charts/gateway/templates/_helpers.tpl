{{/*
The gateway chart's own helpers. Names, labels, security contexts, probes and the shared manifests come from the
tessera-common library chart (charts/tessera-common).
*/}}

{{/* Settings only the gateway reads; added to the ConfigMap. */}}
{{- define "gateway.config" -}}
TESSERA_HTTP_ADDR: {{ printf "0.0.0.0:%v" .Values.containerPort | quote }}
TESSERA_USERS_FILE: {{ printf "/etc/tessera/users/%s" .Values.users.key | quote }}
{{- if .Values.servermedias.existingClaim }}
TESSERA_SERVERMEDIAS_ROOT: {{ .Values.servermedias.mountPath | quote }}
{{- end }}
{{- end -}}
