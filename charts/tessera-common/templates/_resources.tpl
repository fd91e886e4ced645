{{/*
Whole manifests that are the same shape in every service chart. Each chart's templates/<kind>.yaml is a one-line
include of one of these.
*/}}

{{/* The Service in front of the pods. Call with (dict "ctx" . "portName" "grpc"). */}}
{{- define "tessera-common.service" -}}
{{- $ctx := .ctx -}}
apiVersion: v1
kind: Service
metadata:
  name: {{ include "tessera-common.fullname" $ctx }}
  labels:
    {{- include "tessera-common.labels" $ctx | nindent 4 }}
  {{- with $ctx.Values.service.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  type: {{ $ctx.Values.service.type }}
  selector:
    {{- include "tessera-common.selectorLabels" $ctx | nindent 4 }}
  ports:
    - name: {{ .portName }}
      port: {{ $ctx.Values.service.port }}
      targetPort: {{ .portName }}
      protocol: TCP
      appProtocol: {{ .portName }}
{{- end -}}

{{/*
The pod's ServiceAccount. Call with (dict "ctx" . "automount" false); only compute with the Kubernetes executor
passes true.
*/}}
{{- define "tessera-common.serviceAccount" -}}
{{- $ctx := .ctx -}}
{{- if $ctx.Values.serviceAccount.create -}}
apiVersion: v1
kind: ServiceAccount
metadata:
  name: {{ include "tessera-common.serviceAccountName" $ctx }}
  labels:
    {{- include "tessera-common.labels" $ctx | nindent 4 }}
  {{- with $ctx.Values.serviceAccount.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
automountServiceAccountToken: {{ .automount }}
{{- end -}}
{{- end -}}

{{/*
The service's NetworkPolicy: ingress to the service port only from networkPolicy.ingressFrom (an empty list
admits every source), egress as networkPolicy.egress.
*/}}
{{- define "tessera-common.networkPolicy" -}}
{{- if .Values.networkPolicy.enabled -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "tessera-common.fullname" . }}
  labels:
    {{- include "tessera-common.labels" . | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "tessera-common.selectorLabels" . | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - ports:
        - port: {{ .Values.containerPort }}
          protocol: TCP
      {{- with .Values.networkPolicy.ingressFrom }}
      from:
        {{- toYaml . | nindent 8 }}
      {{- end }}
  {{- with .Values.networkPolicy.egress }}
  egress:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}
