{{/*
Pod-level building blocks shared by the five Deployments: metadata, scheduling, security contexts, probes,
environment and the volumes every pod has (/tmp and the organization's credential).
*/}}

{{/* Pod metadata. The checksum rolls the pods when the service's ConfigMap changes. */}}
{{- define "tessera-common.podMetadata" -}}
labels:
  {{- include "tessera-common.labels" . | nindent 2 }}
  {{- with .Values.podLabels }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
annotations:
  checksum/config: {{ include (print .Template.BasePath "/configmap.yaml") . | sha256sum }}
  {{- with .Values.podAnnotations }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Scheduling and identity fields of the pod spec (everything but containers and volumes). */}}
{{- define "tessera-common.podSpec" -}}
serviceAccountName: {{ include "tessera-common.serviceAccountName" . }}
{{- with .Values.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
terminationGracePeriodSeconds: {{ .Values.terminationGracePeriodSeconds }}
securityContext:
  {{- include "tessera-common.podSecurityContext" . | nindent 2 }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* Non-root pod with the runtime's default seccomp profile. Only the numeric ids are configurable. */}}
{{- define "tessera-common.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.podSecurity.runAsUser }}
runAsGroup: {{ .Values.podSecurity.runAsGroup }}
fsGroup: {{ .Values.podSecurity.fsGroup }}
fsGroupChangePolicy: OnRootMismatch
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Read-only root filesystem, no privilege escalation, no capabilities. Not configurable on purpose. */}}
{{- define "tessera-common.containerSecurityContext" -}}
runAsNonRoot: true
allowPrivilegeEscalation: false
privileged: false
readOnlyRootFilesystem: true
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* The image line and the command `python -m <module>`. Call with (dict "ctx" . "module" "services.asset"). */}}
{{- define "tessera-common.containerImage" -}}
image: {{ include "tessera-common.image" .ctx | quote }}
imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
command:
  - python
  - -m
  - {{ .module }}
{{- end -}}

{{/*
Startup, liveness and readiness probes from .Values.probes: startup and liveness around .handler, readiness
around .ready (default: .handler). The startup probe covers the database migrations every service runs before
it serves.
*/}}
{{- define "tessera-common.probes" -}}
startupProbe:
  {{- toYaml (merge (dict) .handler .probes.startup) | nindent 2 }}
livenessProbe:
  {{- toYaml (merge (dict) .handler .probes.liveness) | nindent 2 }}
readinessProbe:
  {{- toYaml (merge (dict) (.ready | default .handler) .probes.readiness) | nindent 2 }}
{{- end -}}

{{/* The port of the plaintext grpc.health.v1 server (TESSERA_HEALTH_ADDR) that gRPC services open for probes. */}}
{{- define "tessera-common.healthPort" -}}
{{- .Values.healthPort | default 8081 -}}
{{- end -}}

{{/*
Kubernetes' native gRPC probe against grpc.health.v1 on the health port. Not the service port: the kubelet's
gRPC probe speaks plaintext only, and in mtls mode the service port requires a client certificate.
*/}}
{{- define "tessera-common.grpcProbes" -}}
{{- $handler := dict "grpc" (dict "port" (int (include "tessera-common.healthPort" .))) -}}
{{- include "tessera-common.probes" (dict "handler" $handler "probes" .Values.probes) -}}
{{- end -}}

{{/*
HTTP probes on the named `http` port: startup and liveness on .Values.livenessPath, which answers without
calling anyone; readiness on .Values.healthPath, which answers 200 only while every upstream serves.
*/}}
{{- define "tessera-common.httpProbes" -}}
{{- $alive := dict "httpGet" (dict "path" .Values.livenessPath "port" "http") -}}
{{- $ready := dict "httpGet" (dict "path" .Values.healthPath "port" "http") -}}
{{- include "tessera-common.probes" (dict "handler" $alive "ready" $ready "probes" .Values.probes) -}}
{{- end -}}

{{/*
Container environment: the service's ConfigMap (settings and upstream addresses), the database URL from its
Secret, then extraEnv, which may override anything before it.
*/}}
{{- define "tessera-common.containerEnv" -}}
envFrom:
  - configMapRef:
      name: {{ include "tessera-common.fullname" . }}
env:
  - name: TESSERA_DATABASE_URL
    valueFrom:
      secretKeyRef:
        name: {{ required "database.existingSecret is required: a Secret holding the database URL" .Values.database.existingSecret }}
        key: {{ .Values.database.key }}
  {{- with .Values.extraEnv }}
  {{- toYaml . | nindent 2 }}
  {{- end }}
{{- end -}}

{{/* Mount points of the volumes below. */}}
{{- define "tessera-common.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if eq .Values.auth.mode "secret" }}
- name: org-credentials
  mountPath: /etc/tessera/credentials
  readOnly: true
{{- else }}
- name: tls
  mountPath: /etc/tessera/tls
  readOnly: true
{{- end }}
{{- end -}}

{{/* A writable /tmp (the root filesystem is read-only) and the organization's credential. */}}
{{- define "tessera-common.volumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmp.sizeLimit }}
{{- if eq .Values.auth.mode "secret" }}
- name: org-credentials
  secret:
    secretName: {{ required "auth.orgCredentials.existingSecret is required when auth.mode is secret" .Values.auth.orgCredentials.existingSecret }}
    defaultMode: 288 # 0440: owner and fsGroup may read
    items:
      - key: {{ .Values.auth.orgCredentials.verifiersKey }}
        path: {{ .Values.auth.orgCredentials.verifiersKey }}
      {{- with .Values.auth.orgCredentials.secretKey }}
      - key: {{ . }}
        path: {{ . }}
      {{- end }}
{{- else }}
- name: tls
  secret:
    secretName: {{ required "auth.tls.existingSecret is required when auth.mode is mtls" .Values.auth.tls.existingSecret }}
    defaultMode: 288 # 0440: owner and fsGroup may read
    items:
      - key: tls.crt
        path: tls.crt
      - key: tls.key
        path: tls.key
      - key: ca.crt
        path: ca.crt
{{- end }}
{{- end -}}
