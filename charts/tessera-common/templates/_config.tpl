{{/*
Configuration: one ConfigMap per service, loaded whole with envFrom. Only the database URL (a Secret) and
extraEnv are set on the container directly.
*/}}

{{/* Settings every service reads, as a YAML map of environment variables. */}}
{{- define "tessera-common.baseConfig" -}}
{{- $data := dict
  "TESSERA_LOG_LEVEL" .Values.logLevel
  "TESSERA_NATS_URL" .Values.nats.url
  "TESSERA_AUTH_MODE" .Values.auth.mode
  "PYTHONDONTWRITEBYTECODE" "1"
  "PYTHONUNBUFFERED" "1"
-}}
{{- if eq .Values.auth.mode "secret" -}}
{{- $credentials := .Values.auth.orgCredentials -}}
{{- $_ := set $data "TESSERA_ORG_VERIFIERS_FILE" (printf "/etc/tessera/credentials/%s" (required "auth.orgCredentials.verifiersKey is required when auth.mode is secret" $credentials.verifiersKey)) -}}
{{- with $credentials.secretKey -}}
{{- $_ := set $data "TESSERA_ORG_SECRET_FILE" (printf "/etc/tessera/credentials/%s" .) -}}
{{- end -}}
{{- else if eq .Values.auth.mode "mtls" -}}
{{- $_ := set $data "TESSERA_TLS_CERT" "/etc/tessera/tls/tls.crt" -}}
{{- $_ := set $data "TESSERA_TLS_KEY" "/etc/tessera/tls/tls.key" -}}
{{- $_ := set $data "TESSERA_TLS_CA" "/etc/tessera/tls/ca.crt" -}}
{{- else -}}
{{- fail (printf "auth.mode must be secret or mtls, not %q" .Values.auth.mode) -}}
{{- end -}}
{{- with .Values.organization -}}
{{- $_ := set $data "TESSERA_ORG_ID" . -}}
{{- end -}}
{{- with .Values.channels -}}
{{- $_ := set $data "TESSERA_CHANNELS" . -}}
{{- end -}}
{{- with .Values.publicUrl -}}
{{- $_ := set $data "TESSERA_PUBLIC_URL" . -}}
{{- end -}}
{{- with .Values.peers -}}
{{- $_ := set $data "TESSERA_PEERS" . -}}
{{- end -}}
{{- with .Values.modelExportChannels -}}
{{- $_ := set $data "TESSERA_MODEL_EXPORT_CHANNELS" . -}}
{{- end -}}
{{- range $k, $v := .Values.otel -}}
{{- if not (hasPrefix "OTEL_" $k) -}}
{{- fail (printf "otel.%s: keys of otel must be OTEL_* variable names" $k) -}}
{{- end -}}
{{- $_ := set $data $k $v -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
Upstream addresses as <NAME>_ADDR, for the services named in .names, from .ctx.Values.upstreams.
Call with (dict "ctx" . "names" (list "asset" "storage")).
*/}}
{{- define "tessera-common.upstreamConfig" -}}
{{- $data := dict -}}
{{- range .names -}}
{{- $addr := index ($.ctx.Values.upstreams | default dict) . -}}
{{- $_ := set $data (printf "%s_ADDR" (upper .)) (required (printf "upstreams.%s is required: host:port of the %s service" . .) $addr) -}}
{{- end -}}
{{- toYaml $data -}}
{{- end -}}

{{/*
The service's ConfigMap. Call with
(dict "ctx" . "upstreams" (list "asset") "extra" (dict "TESSERA_STORAGE_ROOT" "/data")).
Later sources win: base settings, then upstream addresses, then the chart's extra settings.
*/}}
{{- define "tessera-common.configMap" -}}
{{- $ctx := .ctx -}}
{{- $data := fromYaml (include "tessera-common.baseConfig" $ctx) -}}
{{- $data = mergeOverwrite $data (fromYaml (include "tessera-common.upstreamConfig" (dict "ctx" $ctx "names" (.upstreams | default list)))) -}}
{{- $data = mergeOverwrite $data (.extra | default dict) -}}
{{- if hasKey $data "TESSERA_GRPC_ADDR" -}}
{{- /* gRPC services also answer grpc.health.v1 in plaintext there, for the kubelet's probes. */ -}}
{{- $_ := set $data "TESSERA_HEALTH_ADDR" (printf "0.0.0.0:%s" (include "tessera-common.healthPort" $ctx)) -}}
{{- end -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ include "tessera-common.fullname" $ctx }}
  labels:
    {{- include "tessera-common.labels" $ctx | nindent 4 }}
data:
  {{- range $k, $v := $data }}
  {{ $k }}: {{ $v | toString | quote }}
  {{- end }}
{{- end -}}
